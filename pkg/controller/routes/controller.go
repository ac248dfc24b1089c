package routes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/azure"
	"github.com/stargate-k8s/stargate/pkg/cilium"
	ipamctrl "github.com/stargate-k8s/stargate/pkg/controller/ipam"
	"github.com/stargate-k8s/stargate/pkg/sshexec"
	"github.com/stargate-k8s/stargate/pkg/tailscale"
)

// Controller is the route reconciler group of stargate-controller: pod CIDR
// allocation (ipam) and route reconciliation on every layer.
type Controller struct {
	Options
	// EnableIPAM and EnableRouteSync switch the two reconcilers.
	EnableIPAM, EnableRouteSync bool
	IPAM                        *ipamctrl.Controller

	// TailscaleSecret is namespace/name of a Secret with Tailscale
	// credentials; the environment is used when empty.
	TailscaleSecret string
	TailscaleAPIURL string
	// AdvertiseOverSSH keeps the DC routers' advertised routes with
	// `tailscale set --advertise-routes` over SSH.
	AdvertiseOverSSH bool
	AdvertiseSSHPort int
	AdvertiseCommand string
	// AdvertiseDial opens SSH connections to routers; a net.Dialer when
	// nil (tests dial into a simulated datacenter).
	AdvertiseDial sshexec.DialFunc
	// PassDelay gathers the events of a burst into one pass.
	PassDelay time.Duration

	// Set by tests (or a future SSH wiring) before SetupWithManager; built
	// from the flags when nil.
	AzureTable *azure.Table
	Tailscale  *tailscale.Syncer
	Advertiser tailscale.RouteAdvertiser

	// Reconciler is the route reconciler, once set up.
	Reconciler *Reconciler
}

// New returns the group with its flag defaults.
func New() *Controller {
	return &Controller{Options: DefaultOptions(), EnableIPAM: true, EnableRouteSync: true, IPAM: ipamctrl.New(),
		AdvertiseOverSSH: true, PassDelay: time.Second, AdvertiseSSHPort: 22, AdvertiseCommand: "sudo tailscale set --advertise-routes="}
}

// Name implements manager.Controller.
func (c *Controller) Name() string { return "routes" }

// AddFlags implements manager.Controller.
func (c *Controller) AddFlags(fs *pflag.FlagSet) {
	c.IPAM.AddFlags(fs)
	fs.BoolVar(&c.EnableIPAM, "enable-ipam", c.EnableIPAM, "Allocate a pod CIDR to every Server.")
	fs.BoolVar(&c.EnableRouteSync, "enable-route-sync", c.EnableRouteSync, "Reconcile routes at all; the per-layer flags pick the layers.")
	fs.BoolVar(&c.EnableAzure, "enable-azure-routes", c.EnableAzure, "Keep the Azure VNet route table right (needs -azure-* flags and Azure credentials).")
	fs.BoolVar(&c.EnableTailscale, "enable-tailscale-routes", c.EnableTailscale, "Keep the routers' Tailscale subnet routes right (needs Tailscale credentials).")
	fs.BoolVar(&c.EnableCilium, "enable-cilium-pod-cidr", c.EnableCilium, "Set Node spec.podCIDR(s) and CiliumNode spec.ipam.podCIDRs.")
	fs.DurationVar(&c.Resync, "route-resync-period", c.Resync, "How often every layer is re-read and drift repaired, with no event.")
	fs.DurationVar(&c.PassDelay, "route-pass-delay", c.PassDelay, "How long after a watch event a pass starts, so a burst of changes costs one pass (and one write per route table and router).")
	fs.DurationVar(&c.StatusRefresh, "route-status-refresh", c.StatusRefresh, "How often unchanged route status is rewritten to refresh lastChecked; 0 never.")
	fs.StringVar(&c.AzureSubscription, "azure-subscription-id", os.Getenv("AZURE_SUBSCRIPTION_ID"), "Subscription of the route table.")
	fs.StringVar(&c.AzureResourceGroup, "azure-resource-group", c.AzureResourceGroup, "Resource group of the route table.")
	fs.StringVar(&c.AzureRouteTable, "azure-route-table", c.AzureRouteTable, "Name of the AKS subnet's route table.")
	fs.StringVar(&c.RoutePrefix, "azure-route-prefix", c.RoutePrefix, "Name prefix of the routes Stargate owns; no other route is ever changed.")
	fs.StringVar(&c.AzureNextHop, "aks-router-ip", c.AzureNextHop, "Private IP of the AKS router, next hop of every Stargate route.")
	fs.DurationVar(&c.AzureOperationTimeout, "azure-operation-timeout", c.AzureOperationTimeout, "Longest a write of the route table may take, its long-running operation polled to the end included; a hung operation fails the pass's Azure layer (AzureOperationTimeout) and the next pass tries again.")
	fs.DurationVar(&c.AzurePollInterval, "azure-poll-interval", c.AzurePollInterval, "How often a long-running route table write is polled (at least 1s).")
	fs.IntVar(&c.MaxRoutes, "azure-route-limit", c.MaxRoutes, "Route limit of the table; the condition warns from 90% of it.")
	fs.StringVar(&c.AKSRouterTailnetIP, "aks-router-tailnet-ip", c.AKSRouterTailnetIP, "Tailnet IP of the AKS router.")
	fs.StringSliceVar(&c.AKSRoutes, "aks-router-routes", c.AKSRoutes, "Routes the AKS router advertises and must have enabled (AKS pod and service CIDRs).")
	fs.IntVar(&c.WorkerSubnetBits, "worker-subnet-bits", c.WorkerSubnetBits, "Ignored: a Server's worker subnet is the one its Datacenter declares (spec.workerSubnet).")
	_ = fs.MarkDeprecated("worker-subnet-bits", "the worker subnet is the Datacenter's spec.workerSubnet")
	fs.StringVar(&c.TailscaleSecret, "tailscale-credentials-secret", c.TailscaleSecret, "namespace/name of a Secret with api-key, or client-id and client-secret; TS_API_KEY or TS_OAUTH_CLIENT_ID/TS_OAUTH_CLIENT_SECRET when empty.")
	fs.BoolVar(&c.AdvertiseOverSSH, "advertise-routes-over-ssh", c.AdvertiseOverSSH, "Make each DC router advertise its routes by running the advertise command over SSH (credentials and known_hosts of the profile of a Server behind it); when false, routes a router does not advertise are only reported.")
	fs.IntVar(&c.AdvertiseSSHPort, "advertise-routes-ssh-port", c.AdvertiseSSHPort, "SSH port of the DC routers for advertising routes.")
	fs.StringVar(&c.AdvertiseCommand, "advertise-routes-command", c.AdvertiseCommand, "Command run on a DC router with the comma-separated routes appended.")
	fs.StringVar(&c.TailscaleAPIURL, "tailscale-api-url", c.TailscaleAPIURL, "Tailscale API base URL; the public API when empty.")
}

// SetupWithManager implements manager.Controller.
func (c *Controller) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	c.IPAM.WaitForRoutes = c.EnableRouteSync
	if c.EnableIPAM {
		if err := c.IPAM.SetupWithManager(ctx, mgr); err != nil {
			return err
		}
	}
	if !c.EnableRouteSync {
		return nil
	}
	pool, err := c.IPAM.Config()
	if err != nil {
		return err
	}
	if c.EnableAzure && c.AzureTable == nil {
		if c.AzureTable, err = c.azureTable(); err != nil {
			return err
		}
	}
	if c.EnableTailscale && c.Tailscale == nil {
		if c.Tailscale, err = c.tailscaleSyncer(ctx, mgr.GetAPIReader()); err != nil {
			return err
		}
	}
	if c.Tailscale != nil {
		if c.Advertiser == nil && c.AdvertiseOverSSH {
			c.Advertiser = &SSHAdvertiser{Client: mgr.GetAPIReader(), Port: c.AdvertiseSSHPort, Command: c.AdvertiseCommand, Dial: c.AdvertiseDial}
		}
		if c.Tailscale.Advertiser == nil {
			c.Tailscale.Advertiser = c.Advertiser
		}
	}
	r := &Reconciler{
		Options: c.Options, Pool: pool, Client: mgr.GetClient(), CiliumReader: mgr.GetAPIReader(), APIReader: mgr.GetAPIReader(),
		Recorder:   mgr.GetEventRecorderFor("stargate-routes"), //nolint:staticcheck // the events/v1 recorder is not wired in the manager yet
		AzureTable: c.AzureTable, Tailscale: c.Tailscale,
	}
	c.Reconciler = r
	// Every event asks for the same pass, a little later: a burst of
	// Servers (or their CIDRs) arriving becomes one pass and so one write
	// per table and router, since the queue holds a key only once.
	req := ctrl.Request{NamespacedName: types.NamespacedName{Name: "all-servers"}}
	enqueue := func(q workqueue.TypedRateLimitingInterface[ctrl.Request]) { q.AddAfter(req, c.PassDelay) }
	pass := handler.Funcs{
		CreateFunc: func(_ context.Context, _ event.CreateEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			enqueue(q)
		},
		UpdateFunc: func(_ context.Context, _ event.UpdateEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			enqueue(q)
		},
		DeleteFunc: func(_ context.Context, _ event.DeleteEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			enqueue(q)
		},
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("routes").
		Watches(&v1alpha1.Server{}, pass, builder.WithPredicates(serverChanged())).
		Watches(&corev1.Node{}, pass, builder.WithPredicates(nodeChanged())).
		// A Datacenter decides which Servers are routed, and their subnet;
		// its status (the pass's own Tailscale records) does not.
		Watches(&v1alpha1.Datacenter{}, pass, builder.WithPredicates(datacenterChanged())).
		// One pass at a time: a pass covers every Server.
		WithOptions(controller.Options{MaxConcurrentReconciles: 1})
	if c.EnableCilium {
		if _, err := mgr.GetRESTMapper().RESTMapping(cilium.CiliumNodeGVK.GroupKind(), cilium.CiliumNodeGVK.Version); err == nil {
			b = b.Watches(cilium.NewCiliumNode(), pass, builder.WithPredicates(ciliumNodeChanged()))
			// The watch fills the cache; reading from it spares a LIST
			// (and its decoding) per pass.
			r.CiliumReader = mgr.GetCache()
		} else {
			// Without the CRD there is nothing to watch; passes report it
			// and resyncs notice when it is installed.
			mgr.GetLogger().Info("CiliumNode CRD not served; CiliumNodes are checked on resync only", "error", err.Error())
		}
	}
	return b.Complete(r)
}

func (c *Controller) azureTable() (*azure.Table, error) {
	if c.AzureSubscription == "" || c.AzureResourceGroup == "" || c.AzureRouteTable == "" || c.AzureNextHop == "" {
		return nil, fmt.Errorf("-enable-azure-routes needs -azure-subscription-id, -azure-resource-group, -azure-route-table and -aks-router-ip")
	}
	client, err := azure.NewRouteTablesClient(c.AzureSubscription, azure.ClientOptions(nil))
	if err != nil {
		return nil, err
	}
	return &azure.Table{Client: client, ResourceGroup: c.AzureResourceGroup, Name: c.AzureRouteTable, Prefix: c.RoutePrefix, MaxRoutes: c.MaxRoutes,
		OperationTimeout: c.AzureOperationTimeout, PollFrequency: c.AzurePollInterval}, nil
}

func (c *Controller) tailscaleSyncer(ctx context.Context, reader client.Reader) (*tailscale.Syncer, error) {
	creds := tailscale.CredentialsFromEnv()
	if c.TailscaleSecret != "" {
		ns, name, ok := strings.Cut(c.TailscaleSecret, "/")
		if !ok {
			return nil, fmt.Errorf("-tailscale-credentials-secret %q: want namespace/name", c.TailscaleSecret)
		}
		var s corev1.Secret
		if err := reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
			return nil, fmt.Errorf("read Tailscale credentials Secret %s: %w", c.TailscaleSecret, err)
		}
		creds = tailscale.CredentialsFromSecret(s.Data)
	}
	creds.BaseURL = c.TailscaleAPIURL
	cl, err := tailscale.NewClient(creds)
	if err != nil {
		return nil, err
	}
	return &tailscale.Syncer{Client: cl}, nil
}

// serverChanged passes Server events that change routing: create, delete,
// finalizers, deletion, pod CIDR, node name, addresses. Status writes of
// the pass itself do not start another pass.
func serverChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*v1alpha1.Server)
			n, ok2 := e.ObjectNew.(*v1alpha1.Server)
			if !ok1 || !ok2 {
				return true
			}
			return o.Generation != n.Generation || o.Status.PodCIDR != n.Status.PodCIDR || o.Status.NodeName != n.Status.NodeName ||
				!o.DeletionTimestamp.Equal(n.DeletionTimestamp) || fmt.Sprint(o.Finalizers) != fmt.Sprint(n.Finalizers)
		},
	}
}

func nodeChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*corev1.Node)
			n, ok2 := e.ObjectNew.(*corev1.Node)
			return !ok1 || !ok2 || o.Spec.PodCIDR != n.Spec.PodCIDR || fmt.Sprint(o.Spec.PodCIDRs) != fmt.Sprint(n.Spec.PodCIDRs)
		},
	}
}

// datacenterChanged passes Datacenter events that change routing: spec
// (generation), deletion and finalizers; not status writes, which the
// pass makes itself.
func datacenterChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld, e.ObjectNew
			return o.GetGeneration() != n.GetGeneration() || !o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp()) ||
				fmt.Sprint(o.GetFinalizers()) != fmt.Sprint(n.GetFinalizers())
		},
	}
}

// ciliumNodeChanged passes CiliumNode events that concern routing: the pod
// CIDRs, the labels that say whose it is, deletion; not the agent's status
// and address updates.
func ciliumNodeChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*unstructured.Unstructured)
			n, ok2 := e.ObjectNew.(*unstructured.Unstructured)
			if !ok1 || !ok2 {
				return true
			}
			op, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "ipam", "podCIDRs")
			np, _, _ := unstructured.NestedStringSlice(n.Object, "spec", "ipam", "podCIDRs")
			return fmt.Sprint(op) != fmt.Sprint(np) || fmt.Sprint(o.GetLabels()) != fmt.Sprint(n.GetLabels()) ||
				!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp())
		},
	}
}

// Validate implements manager.Validator: the IPAM flags, when IPAM runs,
// and the durations.
func (c *Controller) Validate() error {
	var errs []error
	if c.EnableIPAM {
		if err := c.IPAM.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Resync <= 0 {
		errs = append(errs, fmt.Errorf("--route-resync-period must be positive, got %s", c.Resync))
	}
	if c.PassDelay < 0 {
		errs = append(errs, fmt.Errorf("--route-pass-delay must not be negative, got %s", c.PassDelay))
	}
	if c.EnableAzure && c.AzurePollInterval < time.Second {
		errs = append(errs, fmt.Errorf("--azure-poll-interval must be at least 1s, got %s", c.AzurePollInterval))
	}
	return errors.Join(errs...)
}
