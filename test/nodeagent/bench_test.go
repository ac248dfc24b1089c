package nodeagent_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/nodeagent"
)

// mainRoutes counts the IPv4 routes of the worker namespace's main table
// (its IPv6 link-local routes come and go as links finish DAD).
func mainRoutes(tb testing.TB, tn *testNet) int {
	tb.Helper()
	rs, err := tn.H.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		tb.Fatal(err)
	}
	return len(rs)
}

// newTableOf makes a healthy test network whose main table holds n routes.
func newTableOf(tb testing.TB, n int) *testNet {
	tb.Helper()
	base := mainRoutes(tb, newTestNet(tb, 0)) // the healthy routes and the connected subnet
	tn := newTestNet(tb, n-base)
	if got := mainRoutes(tb, tn); got != n {
		tb.Fatalf("main table holds %d routes, want %d", got, n)
	}
	return tn
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCheckPass is one check pass of the agent: dump the routing
// table, find the routes of the AKS CIDRs and the pod CIDR, compare the
// CiliumNode's pod CIDR, build the report. cpu-ns/op counts user and
// system time (the kernel's side of the netlink dump is system time of
// this process). routes=10 is the baseline.
func BenchmarkCheckPass(b *testing.B) {
	srv := &v1alpha1.Server{
		ObjectMeta: metav1.ObjectMeta{Name: "w1", Namespace: dc},
		Status:     v1alpha1.ServerStatus{NodeName: "w1", PodCIDR: podCIDR},
	}
	view := nodeagent.CiliumView{Synced: true, Found: true, PodCIDRs: []string{podCIDR}}
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			tn := newTableOf(b, n)
			cfg := agentConfig("w1", tn, "")
			c, err := nodeagent.NewChecker(&cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if st := c.Check(context.Background(), srv, view); st.Routes.Status != metav1.ConditionTrue {
				b.Fatalf("the table is not healthy: %+v", st.Routes)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				c.Check(ctx, srv, view)
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
