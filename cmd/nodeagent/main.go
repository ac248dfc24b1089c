// Command stargate-nodeagent checks a datacenter worker's routes and Cilium
// pod CIDR and reports them on the worker's Server.
package main

import (
	"context"
	goflag "flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/stargate-k8s/stargate/pkg/nodeagent"
)

func main() {
	fs := pflag.NewFlagSet("stargate-nodeagent", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "stargate-nodeagent checks this worker's routes to the cluster and its Cilium pod CIDR, and reports them on its Server's status.\n\nUsage:\n  stargate-nodeagent [flags]\n\nFlags:\n%s", fs.FlagUsages())
	}
	opts := nodeagent.NewOptions()
	opts.AddFlags(fs)
	klogFlags := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	help := fs.BoolP("help", "h", false, "Show this help.")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *help {
		fs.Usage()
		os.Exit(0)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := nodeagent.Run(ctx, opts); err != nil {
		klog.ErrorS(err, "stargate-nodeagent failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}
