// Command stargate-controller provisions Servers and reconciles their routes.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
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
	// Each group's flags in a set of its own, named after it, so --help
	// shows them by group; they are parsed as one.
	var fss cliflag.NamedFlagSets
	opts := manager.NewOptions()
	opts.AddFlags(fss.FlagSet("manager"))
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
		c.AddFlags(fss.FlagSet(c.Name()))
	}
	globalflag.AddGlobalFlags(fss.FlagSet("global"), "stargate-controller")
	fs := pflag.NewFlagSet("stargate-controller", pflag.ContinueOnError)
	for _, name := range fss.Order {
		fs.AddFlagSet(fss.FlagSets[name])
	}
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "stargate-controller provisions stargate.io Servers into Kubernetes nodes and keeps their routes right.\n\nUsage:\n  stargate-controller [flags]\n")
		cliflag.PrintSections(os.Stderr, fss, 0)
		fmt.Fprintf(os.Stderr, "\nFlags of the original Stargate's controller, accepted with one dash (as any long flag above is) and what each is now:\n%s", manager.LegacyFlagUsages())
	}
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
	if err := manager.Validate(opts, controllers...); err != nil {
		fmt.Fprintf(os.Stderr, "stargate-controller: invalid flags:\n%v\nRun 'stargate-controller --help' for the flags.\n", err)
		os.Exit(2)
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
