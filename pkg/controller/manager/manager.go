// Package manager is stargate-controller's controller-runtime manager: one
// leader-elected manager with metrics and health probes, to which each
// reconciler group (operations, ipam, routes, ...) adds itself; the
// datacenter reconciler, which every group relies on, it adds itself.
package manager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	stargatev1alpha1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/datacenter"
)

// Scheme holds the core types and stargate.io/v1alpha1.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(stargatev1alpha1.AddToScheme(Scheme))
	// stargate.io is served by an aggregated API server, which speaks
	// protobuf (CRDs cannot): clients built by controller-runtime then use
	// it for Stargate's types as they do for the built-in ones, which
	// saves encoding and decoding on both ends of every request.
	utilruntime.Must(apiutil.AddToProtobufScheme(stargatev1alpha1.AddToScheme))
}

// Controller is one reconciler group of stargate-controller.
type Controller interface {
	// Name names the group in logs and errors.
	Name() string
	// AddFlags adds the group's own flags.
	AddFlags(fs *pflag.FlagSet)
	// SetupWithManager adds the group's reconcilers to mgr.
	SetupWithManager(ctx context.Context, mgr ctrl.Manager) error
}

// Validator is implemented by a group whose flags can be checked before
// anything starts: stargate-controller refuses to start, naming every bad
// flag at once, rather than failing in the middle of its setup.
type Validator interface {
	Validate() error
}

// Validate checks the manager's flags and those of every group that can.
func Validate(o *Options, controllers ...Controller) error {
	var errs []error
	if err := o.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, c := range controllers {
		if v, ok := c.(Validator); ok {
			if err := v.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// Options are the manager's own flags.
type Options struct {
	Kubeconfig              string
	MetricsBindAddress      string
	HealthProbeBindAddress  string
	LeaderElect             bool
	LeaderElectionNamespace string
	LeaderElectionID        string
	LeaseDuration           time.Duration
	RenewDeadline           time.Duration
	RetryPeriod             time.Duration
	// KubeAPIQPS and KubeAPIBurst limit the manager's own client: caches,
	// events, leader election and the reconcilers without a client of
	// their own.
	KubeAPIQPS   float32
	KubeAPIBurst int
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		MetricsBindAddress:      ":8080",
		HealthProbeBindAddress:  ":8081",
		LeaderElect:             true,
		LeaderElectionNamespace: "stargate-system",
		LeaderElectionID:        "stargate-controller",
		LeaseDuration:           15 * time.Second,
		RenewDeadline:           10 * time.Second,
		RetryPeriod:             2 * time.Second,
		// A repave emits three or four events; controller-runtime's
		// default of 20 per second made them arrive seconds late when 50
		// Servers were repaved at once.
		KubeAPIQPS:   50,
		KubeAPIBurst: 100,
	}
}

// AddFlags adds the manager's flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig of the cluster; in-cluster config when empty.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "Address of the Prometheus /metrics endpoint; \"0\" turns it off.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "Address of the /healthz and /readyz endpoints.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Elect a leader among replicas through a Lease, so only one reconciles at a time.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace, "Namespace of the leader-election Lease.")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID, "Name of the leader-election Lease.")
	fs.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", o.LeaseDuration, "How long a non-leader waits before taking over a lease that was not renewed.")
	fs.DurationVar(&o.RenewDeadline, "leader-election-renew-deadline", o.RenewDeadline, "How long the leader keeps retrying to renew before giving up leadership.")
	fs.DurationVar(&o.RetryPeriod, "leader-election-retry-period", o.RetryPeriod, "How often leader-election clients retry.")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "Queries per second of the manager's API client (caches, events, leader election, the routes and approval reconcilers).")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Burst of the manager's API client.")
}

// Validate checks the manager's flags.
func (o *Options) Validate() error {
	var errs []error
	if o.LeaderElect {
		if o.RetryPeriod <= 0 || o.RenewDeadline <= o.RetryPeriod || o.LeaseDuration <= o.RenewDeadline {
			errs = append(errs, fmt.Errorf("--leader-election-lease-duration (%s) must be longer than --leader-election-renew-deadline (%s), which must be longer than --leader-election-retry-period (%s), which must be positive",
				o.LeaseDuration, o.RenewDeadline, o.RetryPeriod))
		}
		if o.LeaderElectionNamespace == "" || o.LeaderElectionID == "" {
			errs = append(errs, errors.New("--leader-election-namespace and --leader-election-id must be set when --leader-elect is on"))
		}
	}
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst <= 0 {
		errs = append(errs, fmt.Errorf("--kube-api-qps (%v) and --kube-api-burst (%d) must be positive", o.KubeAPIQPS, o.KubeAPIBurst))
	}
	return errors.Join(errs...)
}

// RESTConfig loads the kubeconfig named by the flags, or the in-cluster config.
func (o *Options) RESTConfig() (*rest.Config, error) {
	if o.Kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	}
	return ctrl.GetConfig()
}

// Run builds the manager, lets every controller set itself up, and runs
// until ctx ends.
func Run(ctx context.Context, o *Options, controllers ...Controller) error {
	cfg, err := o.RESTConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        Scheme,
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress:        o.HealthProbeBindAddress,
		LeaderElection:                o.LeaderElect,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.LeaseDuration,
		RenewDeadline:                 &o.RenewDeadline,
		RetryPeriod:                   &o.RetryPeriod,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Every group acts only on Servers of declared datacenters (each asks
	// pkg/controller/datacenter); the datacenter reconciler, which tells
	// the Server's owners so in its InDatacenter condition, always runs.
	for _, c := range append([]Controller{datacenter.New()}, controllers...) {
		if err := c.SetupWithManager(ctx, mgr); err != nil {
			return fmt.Errorf("set up %s controller: %w", c.Name(), err)
		}
	}
	return mgr.Start(ctx)
}
