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
		fmt.Fprintf(os.Stderr, "\nFlags of the original Stargate's controller, accepted with one dash (as any long flag above is) and what each is now:\n%s", manager.LegacyFlagUsages())
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
	legacy, err := manager.RewriteLegacyFlags(fs, os.Args[1:], os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stargate-controller: %v\nRun 'stargate-controller --help' for the flags.\n", err)
		os.Exit(2)
	}
	for k, v := range legacy.Env {
		os.Setenv(k, v)
	}
	if err := fs.Parse(legacy.Args); err != nil {
		fmt.Fprintf(os.Stderr, "stargate-controller: %v\nRun 'stargate-controller --help' for the flags.\n", err)
		os.Exit(2)
	}
	if help, _ := fs.GetBool("help"); help {
		fs.Usage()
		os.Exit(0)
	}
	ctrl.SetLogger(klog.NewKlogr())
	for _, w := range legacy.Warnings {
		klog.Warning(w)
	}
	if err := manager.Run(ctrl.SetupSignalHandler(), opts, controllers...); err != nil {
		klog.ErrorS(err, "stargate-controller failed")
		os.Exit(1)
	}
}
