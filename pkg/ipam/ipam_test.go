package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestAllocate(t *testing.T) {
	pool := Config{Pool: pfx("10.244.0.0/16"), Size: 24}
	tests := []struct {
		name  string
		cfg   Config
		owner string
		dc    string
		taken Taken
		want  string
		err   error
	}{
		{name: "empty pool gives the first prefix", cfg: pool, owner: "dc/a", want: "10.244.0.0/24"},
		{name: "skips servers, nodes and cilium nodes", cfg: pool, owner: "dc/a", taken: Taken{
			{Prefix: pfx("10.244.0.0/24"), Owner: "dc/b"},
			{Prefix: pfx("10.244.1.0/24"), Owner: "node/aks-1"},
			{Prefix: pfx("10.244.2.0/23"), Owner: "ciliumnode/aks-2"},
		}, want: "10.244.4.0/24"},
		{name: "own holding does not block", cfg: pool, owner: "dc/a", taken: Taken{{Prefix: pfx("10.244.0.0/24"), Owner: "dc/a"}}, want: "10.244.0.0/24"},
		{name: "skips reserved ranges", cfg: Config{Pool: pfx("10.244.0.0/16"), Size: 24, Reserved: []netip.Prefix{pfx("10.244.0.0/20")}}, owner: "dc/a", want: "10.244.16.0/24"},
		{name: "a wider holder covering a later start is honoured", cfg: pool, owner: "dc/a", taken: Taken{
			{Prefix: pfx("10.244.0.0/17"), Owner: "node/x"},
			{Prefix: pfx("10.244.5.0/24"), Owner: "node/y"},
		}, want: "10.244.128.0/24"},
		{name: "exhausted pool", cfg: Config{Pool: pfx("10.244.0.0/23"), Size: 24}, owner: "dc/c", taken: Taken{
			{Prefix: pfx("10.244.0.0/24"), Owner: "dc/a"}, {Prefix: pfx("10.244.1.0/24"), Owner: "dc/b"},
		}, err: ErrPoolExhausted},
		{name: "blocks: a datacenter fills its own block first", cfg: Config{Pool: pfx("10.244.0.0/16"), Size: 24, BlockSize: 20}, owner: "east/c", dc: "east", taken: Taken{
			{Prefix: pfx("10.244.0.0/24"), Owner: "west/a", Datacenter: "west"},
			{Prefix: pfx("10.244.16.0/24"), Owner: "east/b", Datacenter: "east"},
		}, want: "10.244.17.0/24"},
		{name: "blocks: a new datacenter opens the lowest unused block", cfg: Config{Pool: pfx("10.244.0.0/16"), Size: 24, BlockSize: 20}, owner: "north/a", dc: "north", taken: Taken{
			{Prefix: pfx("10.244.0.0/24"), Owner: "west/a", Datacenter: "west"},
			{Prefix: pfx("10.244.16.0/24"), Owner: "east/b", Datacenter: "east"},
		}, want: "10.244.32.0/24"},
		{name: "blocks: a full block spills into a new one", cfg: Config{Pool: pfx("10.244.0.0/16"), Size: 24, BlockSize: 23}, owner: "east/c", dc: "east", taken: Taken{
			{Prefix: pfx("10.244.0.0/24"), Owner: "east/a", Datacenter: "east"},
			{Prefix: pfx("10.244.1.0/24"), Owner: "east/b", Datacenter: "east"},
			{Prefix: pfx("10.244.2.0/24"), Owner: "node/aks"},
		}, want: "10.244.4.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			got, err := tt.cfg.Allocate(tt.owner, tt.dc, tt.taken)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("got %v, %v; want error %v", got, err, tt.err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("got %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestAllocateIsUniqueAcrossAWholePool(t *testing.T) {
	cfg := Config{Pool: pfx("10.244.0.0/16"), Size: 24, BlockSize: 20, Reserved: []netip.Prefix{pfx("10.244.255.0/24")}}
	var taken Taken
	seen := map[netip.Prefix]bool{}
	for i := range 255 {
		dc := fmt.Sprintf("dc-%d", i%5)
		owner := fmt.Sprintf("%s/s%d", dc, i)
		p, err := cfg.Allocate(owner, dc, taken)
		if err != nil {
			// Five datacenters with /20 blocks can strand a few /24s at the
			// end of their last blocks; stop at the first refusal.
			if !errors.Is(err, ErrPoolExhausted) || i < 240 {
				t.Fatalf("allocation %d: %v", i, err)
			}
			break
		}
		if seen[p] {
			t.Fatalf("allocation %d: %s handed out twice", i, p)
		}
		if b, _ := cfg.BlockOf(p); len(cfg.BlocksOf(dc, append(taken, Holder{Prefix: p, Datacenter: dc}))) == 0 || !b.Contains(p.Addr()) {
			t.Fatalf("%s not in a block of %s", p, dc)
		}
		for _, h := range taken {
			if h.Datacenter != dc {
				if hb, _ := cfg.BlockOf(h.Prefix); hb.Contains(p.Addr()) {
					t.Fatalf("%s of %s lies in block %s of %s", p, dc, hb, h.Datacenter)
				}
			}
		}
		seen[p] = true
		taken = append(taken, Holder{Prefix: p, Owner: owner, Datacenter: dc})
	}
}

func TestCheckPin(t *testing.T) {
	cfg := Config{Pool: pfx("10.244.0.0/16"), Size: 24, Reserved: []netip.Prefix{pfx("10.244.255.0/24")}}
	taken := Taken{{Prefix: pfx("10.244.7.0/24"), Owner: "dc/other"}, {Prefix: pfx("10.244.8.0/24"), Owner: "dc/me"}}
	tests := []struct {
		pin, want string
	}{
		{"10.244.9.0/24", ""},
		{"10.244.8.0/24", ""},
		{"10.100.0.0/24", ""},
		{"10.244.7.0/24", "overlaps 10.244.7.0/24 held by dc/other"},
		{"10.244.6.0/23", "overlaps 10.244.7.0/24 held by dc/other"},
		{"10.244.255.0/25", "overlaps reserved range 10.244.255.0/24"},
		{"10.244.9.1/24", "host bits are set"},
	}
	for _, tt := range tests {
		t.Run(tt.pin, func(t *testing.T) {
			err := cfg.CheckPin(pfx(tt.pin), "dc/me", taken)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{
		{},
		{Pool: pfx("10.244.1.0/16"), Size: 24},
		{Pool: pfx("10.244.0.0/16"), Size: 16},
		{Pool: pfx("10.244.0.0/16"), Size: 24, BlockSize: 25},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
}

func BenchmarkAllocate1000(b *testing.B) {
	cfg := Config{Pool: pfx("10.0.0.0/8"), Size: 24, BlockSize: 16}
	for b.Loop() {
		var taken Taken
		for i := range 1000 {
			dc := fmt.Sprintf("dc-%d", i%5)
			p, err := cfg.Allocate(fmt.Sprintf("%s/s%d", dc, i), dc, taken)
			if err != nil {
				b.Fatal(err)
			}
			taken = append(taken, Holder{Prefix: p, Owner: "x", Datacenter: dc})
		}
	}
}
