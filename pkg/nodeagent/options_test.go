package nodeagent

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestOptionsConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{
			name: "defaults with the DC router",
			args: []string{"--node-name=w1", "--next-hop-gateway=192.0.2.1"},
			check: func(t *testing.T, c Config) {
				want := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.0.0.0/16")}
				if len(c.Want.Remote) != 2 || c.Want.Remote[0] != want[0] || c.Want.Remote[1] != want[1] {
					t.Errorf("remote = %v, want %v", c.Want.Remote, want)
				}
				if c.Want.RemoteTable != 254 || c.Want.PodCIDRDevice != "cilium_host" || c.Interval != 30*time.Second || c.Heartbeat != 5*time.Minute {
					t.Errorf("defaults: %+v", c)
				}
				if c.NetNS.IsOpen() {
					t.Errorf("netns open without --netns")
				}
			},
		},
		{
			name: "tailnet device and table",
			args: []string{"--node-name=w1", "--next-hop-device=tailscale0", "--route-table=52", "--remote-cidrs=10.244.1.7/16"},
			check: func(t *testing.T, c Config) {
				if c.Want.NextHopDevice != "tailscale0" || c.Want.RemoteTable != 52 || c.Want.NextHopGateway.IsValid() {
					t.Errorf("want: %+v", c.Want)
				}
				if c.Want.Remote[0] != netip.MustParsePrefix("10.244.0.0/16") {
					t.Errorf("remote %v not masked", c.Want.Remote)
				}
			},
		},
		{name: "gateway from the Datacenter by default", args: []string{"--node-name=w1"},
			check: func(t *testing.T, c Config) {
				if !c.GatewayFromDatacenter || c.Want.NextHopGateway.IsValid() {
					t.Errorf("gateway from Datacenter %v, flag gateway %v; want from the Datacenter only", c.GatewayFromDatacenter, c.Want.NextHopGateway)
				}
			}},
		{name: "no next hop", args: []string{"--node-name=w1", "--gateway-from-datacenter=false"}, wantErr: "name the expected next hop"},
		{name: "no node", args: []string{"--next-hop-gateway=192.0.2.1"}, wantErr: "node name is empty"},
		{name: "bad CIDR", args: []string{"--node-name=w1", "--next-hop-gateway=192.0.2.1", "--remote-cidrs=10.244.0.0/33"}, wantErr: "--remote-cidrs"},
		{name: "more remote CIDRs than a node layer holds", args: []string{"--node-name=w1", "--next-hop-gateway=192.0.2.1", "--remote-cidrs=" + cidrs(64)}, wantErr: "at most 63"},
		{name: "as many remote CIDRs as a node layer holds", args: []string{"--node-name=w1", "--next-hop-gateway=192.0.2.1", "--remote-cidrs=" + cidrs(63)},
			check: func(t *testing.T, c Config) {
				if len(c.Want.Remote) != 63 {
					t.Errorf("%d remote CIDRs, want 63", len(c.Want.Remote))
				}
			}},
		{name: "bad gateway", args: []string{"--node-name=w1", "--next-hop-gateway=router"}, wantErr: "--next-hop-gateway"},
		{name: "local table", args: []string{"--node-name=w1", "--next-hop-gateway=192.0.2.1", "--route-table=255"}, wantErr: "--route-table"},
		{name: "probe without timeout", args: []string{"--node-name=w1", "--next-hop-gateway=192.0.2.1", "--probe-target=198.51.100.10:443", "--probe-timeout=0"}, wantErr: "--probe-timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NODE_NAME", "")
			o := NewOptions()
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			c, err := o.Config()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

// cidrs is n distinct /24s, comma-separated.
func cidrs(n int) string {
	var out []string
	for i := range n {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24).String())
	}
	return strings.Join(out, ",")
}
