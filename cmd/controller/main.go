// Command stargate-controller provisions Servers and reconciles their routes.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/component-base/cli/globalflag"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/stargate-k8s/stargate/pkg/controller/csrapproval"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
	"github.com/stargate-k8s/stargate/pkg/controller/nodehealth"
	"github.com/stargate-k8s/stargate/pkg/controller/operations"
	"github.com/stargate-k8s/stargate/pkg/controller/rollout"
	"github.com/stargate-k8s/stargate/pkg/controller/routes"
)

func main() {
	fs := pflag.NewFlagSet("stargate-controller", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "stargate-controller provisions stargate.io Servers into Kubernetes nodes and keeps their routes right.\n\nUsage:\n  stargate-controller [flags]\n\nFlags:\n%s", fs.FlagUsages())
	}
	opts := manager.NewOptions()
	opts.AddFlags(fs)
	// One line per reconciler group.
	rt := routes.New()
	controllers := []manager.Controller{
		operations.New(),
		nodehealth.New(),
		// The approver keeps serving certificates out of the pod pool.
		csrapproval.New(&rt.IPAM.Pool),
		rt,
		rollout.New(),
	}
	for _, c := range controllers {
		c.AddFlags(fs)
	}
	globalflag.AddGlobalFlags(fs, "stargate-controller")
	if err := fs.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "stargate-controller: %v\nRun 'stargate-controller --help' for the flags.\n", err)
		os.Exit(2)
	}
	if help, _ := fs.GetBool("help"); help {
		fs.Usage()
		os.Exit(0)
	}
	ctrl.SetLogger(klog.NewKlogr())
	if err := manager.Run(ctrl.SetupSignalHandler(), opts, controllers...); err != nil {
		klog.ErrorS(err, "stargate-controller failed")
		os.Exit(1)
	}
}
