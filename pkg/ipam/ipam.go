// Package ipam hands out pod CIDRs: one fixed-size prefix per Server out of
// a pool, never overlapping a prefix already in use (other Servers, Nodes,
// CiliumNodes) or a reserved range. It holds no state of its own: callers
// pass in everything that is taken, read from the API, so an allocation
// survives restarts and two passes over the same state agree.
//
// Optionally each datacenter gets blocks of the pool (e.g. a /20) and its
// servers' prefixes are carved from its blocks, so the cloud side needs one
// route per block rather than one per server.
package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
)

// Config is the shape of the pool.
type Config struct {
	// Pool is where pod CIDRs come from, e.g. 10.244.0.0/16.
	Pool netip.Prefix
	// Size is the prefix length of one server's pod CIDR, e.g. 24.
	Size int
	// BlockSize, when non-zero, is the prefix length of a datacenter's block
	// (e.g. 20); every server's CIDR then lies in a block of its datacenter.
	BlockSize int
	// Reserved ranges are never handed out, nor accepted as pins.
	Reserved []netip.Prefix
}

// Validate says whether the config is usable.
func (c Config) Validate() error {
	if !c.Pool.IsValid() {
		return errors.New("pod CIDR pool is not set")
	}
	if c.Pool != c.Pool.Masked() {
		return fmt.Errorf("pod CIDR pool %s has host bits set; use %s", c.Pool, c.Pool.Masked())
	}
	bits := c.Pool.Addr().BitLen()
	if c.Size <= c.Pool.Bits() || c.Size > bits-2 {
		return fmt.Errorf("pod CIDR size /%d must be longer than the pool's /%d and at most /%d", c.Size, c.Pool.Bits(), bits-2)
	}
	if c.BlockSize != 0 && (c.BlockSize < c.Pool.Bits() || c.BlockSize > c.Size) {
		return fmt.Errorf("datacenter block size /%d must lie between the pool's /%d and the pod CIDR size /%d", c.BlockSize, c.Pool.Bits(), c.Size)
	}
	return nil
}

// Holder is a prefix in use and who uses it.
type Holder struct {
	Prefix netip.Prefix
	// Owner names the user ("dc-east/worker-1", "node/aks-1").
	Owner string
	// Datacenter is the owner's datacenter, empty for non-Stargate users.
	Datacenter string
}

// Taken is everything in use, in any order.
type Taken []Holder

// Overlapping returns the holders whose prefix overlaps p, skipping owner skip.
func (t Taken) Overlapping(p netip.Prefix, skip string) []Holder {
	var out []Holder
	for _, h := range t {
		if h.Owner != skip && h.Prefix.Overlaps(p) {
			out = append(out, h)
		}
	}
	return out
}

// ErrPoolExhausted means no free prefix of the wanted size is left.
var ErrPoolExhausted = errors.New("pod CIDR pool exhausted")

// PinError says why a pinned CIDR cannot be had.
type PinError struct {
	Pin    netip.Prefix
	Reason string
}

func (e *PinError) Error() string { return fmt.Sprintf("pinned pod CIDR %s: %s", e.Pin, e.Reason) }

// CheckPin says whether owner may use the pinned prefix pin.
func (c Config) CheckPin(pin netip.Prefix, owner string, taken Taken) error {
	if pin != pin.Masked() {
		return &PinError{Pin: pin, Reason: fmt.Sprintf("host bits are set; use %s", pin.Masked())}
	}
	for _, r := range c.Reserved {
		if r.Overlaps(pin) {
			return &PinError{Pin: pin, Reason: fmt.Sprintf("overlaps reserved range %s", r)}
		}
	}
	if hs := taken.Overlapping(pin, owner); len(hs) > 0 {
		return &PinError{Pin: pin, Reason: fmt.Sprintf("overlaps %s held by %s", hs[0].Prefix, hs[0].Owner)}
	}
	return nil
}

// Allocate returns the lowest free prefix for owner in datacenter dc.
// With blocks, it first uses the blocks dc already holds (the blocks that
// contain its servers' CIDRs), then opens the lowest block no one else uses.
func (c Config) Allocate(owner, dc string, taken Taken) (netip.Prefix, error) {
	if c.BlockSize == 0 {
		return c.firstFree(c.Pool, owner, taken)
	}
	for _, b := range c.BlocksOf(dc, taken) {
		if p, err := c.firstFree(b, owner, taken); err == nil {
			return p, nil
		}
	}
	// Open a new block: the lowest one that nobody outside dc uses.
	for b := netip.PrefixFrom(c.Pool.Addr(), c.BlockSize); c.Pool.Contains(b.Addr()); {
		if !c.reservedOverlap(b) && !usedByOthers(b, dc, taken) {
			if p, err := c.firstFree(b, owner, taken); err == nil {
				return p, nil
			}
		}
		next, ok := nextPrefix(b)
		if !ok {
			break
		}
		b = next
	}
	return netip.Prefix{}, fmt.Errorf("%w: no /%d block left for datacenter %s in %s", ErrPoolExhausted, c.BlockSize, dc, c.Pool)
}

// usedByOthers says whether anyone outside datacenter dc holds part of b.
func usedByOthers(b netip.Prefix, dc string, taken Taken) bool {
	for _, h := range taken {
		if h.Datacenter != dc && h.Prefix.Overlaps(b) {
			return true
		}
	}
	return false
}

// BlocksOf returns the blocks datacenter dc holds, lowest first: those that
// contain a prefix of one of its servers.
func (c Config) BlocksOf(dc string, taken Taken) []netip.Prefix {
	if c.BlockSize == 0 {
		return nil
	}
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, h := range taken {
		if h.Datacenter != dc || !c.Pool.Overlaps(h.Prefix) || h.Prefix.Bits() < c.BlockSize {
			continue
		}
		b := netip.PrefixFrom(h.Prefix.Addr(), c.BlockSize).Masked()
		if !c.Pool.Contains(b.Addr()) || seen[b] {
			continue
		}
		seen[b] = true
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr().Less(out[j].Addr()) })
	return out
}

// BlockOf returns the datacenter block that holds p, if blocks are on and p
// lies in the pool.
func (c Config) BlockOf(p netip.Prefix) (netip.Prefix, bool) {
	if c.BlockSize == 0 || p.Bits() < c.BlockSize || !c.Pool.Contains(p.Addr()) {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(p.Addr(), c.BlockSize).Masked(), true
}

func (c Config) reservedOverlap(p netip.Prefix) bool {
	for _, r := range c.Reserved {
		if r.Overlaps(p) {
			return true
		}
	}
	return false
}

// firstFree is the lowest prefix of c.Size inside within that overlaps
// neither a reserved range nor anything taken by someone other than owner.
func (c Config) firstFree(within netip.Prefix, owner string, taken Taken) (netip.Prefix, error) {
	// Only holders overlapping within matter; sorting them lets the walk
	// skip over a taken range in one step instead of prefix by prefix.
	var busy []netip.Prefix
	for _, r := range c.Reserved {
		if r.Overlaps(within) {
			busy = append(busy, r)
		}
	}
	for _, h := range taken {
		if h.Owner != owner && h.Prefix.Overlaps(within) {
			busy = append(busy, h.Prefix)
		}
	}
	sort.Slice(busy, func(i, j int) bool { return busy[i].Addr().Less(busy[j].Addr()) })
	p := netip.PrefixFrom(within.Addr(), c.Size)
	idx := 0
	for within.Contains(p.Addr()) {
		// Drop busy ranges that end below p: they cannot touch p or
		// anything after it.
		for idx < len(busy) && lastAddr(busy[idx]).Less(p.Addr()) {
			idx++
		}
		end := lastAddr(p)
		var clash *netip.Prefix
		for i := idx; i < len(busy) && !end.Less(busy[i].Addr()); i++ {
			if busy[i].Overlaps(p) {
				clash = &busy[i]
				break
			}
		}
		if clash == nil {
			return p, nil
		}
		// Step past the clashing range in one go.
		skipTo := lastAddr(*clash)
		for {
			next, ok := nextPrefix(p)
			if !ok {
				return netip.Prefix{}, fmt.Errorf("%w: no free /%d in %s", ErrPoolExhausted, c.Size, within)
			}
			p = next
			if skipTo.Less(p.Addr()) {
				break
			}
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w: no free /%d in %s", ErrPoolExhausted, c.Size, within)
}

// nextPrefix is the prefix of the same length right after p.
func nextPrefix(p netip.Prefix) (netip.Prefix, bool) {
	a := lastAddr(p).Next()
	if !a.IsValid() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, p.Bits()), true
}

// lastAddr is the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	hostBits := len(b)*8 - p.Bits()
	for i := len(b) - 1; i >= 0 && hostBits > 0; i-- {
		n := min(hostBits, 8)
		b[i] |= byte(1<<n - 1)
		hostBits -= n
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// ParsePrefixes parses CIDRs, e.g. from a flag.
func ParsePrefixes(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("parse CIDR %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}
