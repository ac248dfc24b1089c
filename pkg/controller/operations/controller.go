// Package operations runs Operations to completion. A repave connects to
// the server over SSH (through the DC router when set), delivers a fresh
// bootstrap token with the node bootstrap script, waits for the Node to
// become Ready and records every step in the Operation's status before the
// next starts, so a restarted controller resumes where it stopped and
// never runs a finished step again.
package operations

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	stargatev1alpha1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/validation"
	"github.com/stargate-k8s/stargate/pkg/bootstrap"
	"github.com/stargate-k8s/stargate/pkg/sshexec"
)

// Control-plane modes.
const (
	ModeAKS        = "aks"
	ModeSelfHosted = "self-hosted"
)

// Options are the operations controller's flags.
type Options struct {
	ControlPlaneMode       string
	APIServerURL           string
	APIServerCAFile        string
	APIServerTLSServerName string
	ClusterDNS             string
	MaxConcurrentRepaves   int
	SSHAttempts            int
	SSHBackoff             time.Duration
	SSHHandshakeTimeout    time.Duration
	RouterSSHPort          int
	ScriptTimeout          time.Duration
	NodeReadyTimeout       time.Duration
	TokenTTL               time.Duration
	RemoteWorkDir          string
	OutputTailBytes        int
	KubeAPIQPS             float32
	KubeAPIBurst           int
	JumpConnectionIdle     time.Duration
	RebootCommand          string
	ResetScriptFile        string
	DecommissionTimeout    time.Duration
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		ControlPlaneMode:     ModeAKS,
		ClusterDNS:           "10.0.0.10",
		MaxConcurrentRepaves: 5,
		SSHAttempts:          5,
		SSHBackoff:           2 * time.Second,
		SSHHandshakeTimeout:  15 * time.Second,
		RouterSSHPort:        22,
		ScriptTimeout:        30 * time.Minute,
		NodeReadyTimeout:     10 * time.Minute,
		OutputTailBytes:      4096,
		KubeAPIQPS:           50,
		KubeAPIBurst:         100,
		JumpConnectionIdle:   30 * time.Second,
		RebootCommand:        DefaultRebootCommand,
		DecommissionTimeout:  5 * time.Minute,
	}
}

// Controller is the operations reconciler group.
type Controller struct {
	Opts *Options
}

// New returns the controller with default options.
func New() *Controller { return &Controller{Opts: NewOptions()} }

// Name implements manager.Controller.
func (c *Controller) Name() string { return "operations" }

// AddFlags implements manager.Controller.
func (c *Controller) AddFlags(fs *pflag.FlagSet) {
	o := c.Opts
	fs.StringVar(&o.ControlPlaneMode, "control-plane-mode", o.ControlPlaneMode, "Who runs the control plane workers join: \"aks\" (AKS; nodes are labelled kubernetes.azure.com/managed=false so AKS's own controllers leave them alone) or \"self-hosted\".")
	fs.StringVar(&o.APIServerURL, "api-server-url", o.APIServerURL, "URL of the Kubernetes API server as the workers reach it, written into their bootstrap kubeconfig (required).")
	fs.StringVar(&o.APIServerCAFile, "api-server-ca-file", o.APIServerCAFile, "PEM file of the CA that verifies the API server for workers; when empty the kube-system/kube-root-ca.crt ConfigMap is used.")
	fs.StringVar(&o.APIServerTLSServerName, "api-server-tls-server-name", o.APIServerTLSServerName, "Name workers check the API server's certificate against, when --api-server-url's host is not in it.")
	fs.StringVar(&o.ClusterDNS, "cluster-dns", o.ClusterDNS, "Cluster DNS service IP written into the kubelet configuration.")
	fs.IntVar(&o.MaxConcurrentRepaves, "max-concurrent-repaves", o.MaxConcurrentRepaves, "Most repaves that run at once; the others wait, Pending.")
	fs.IntVar(&o.SSHAttempts, "ssh-connect-attempts", o.SSHAttempts, "How often a failed SSH connection is tried before the Operation fails.")
	fs.DurationVar(&o.SSHBackoff, "ssh-retry-backoff", o.SSHBackoff, "Wait before the second SSH attempt; it doubles after each failure.")
	fs.DurationVar(&o.SSHHandshakeTimeout, "ssh-handshake-timeout", o.SSHHandshakeTimeout, "Bound of one TCP connect plus SSH handshake.")
	fs.IntVar(&o.RouterSSHPort, "router-ssh-port", o.RouterSSHPort, "SSH port of the DC routers used as jump hosts.")
	fs.DurationVar(&o.ScriptTimeout, "bootstrap-script-timeout", o.ScriptTimeout, "How long the node bootstrap script may run.")
	fs.DurationVar(&o.NodeReadyTimeout, "node-ready-timeout", o.NodeReadyTimeout, "How long to wait, after the script, for the Node to register and become Ready.")
	fs.DurationVar(&o.TokenTTL, "bootstrap-token-ttl", o.TokenTTL, "Lifetime of a bootstrap token; it is deleted as soon as its Operation ends. 0: --bootstrap-script-timeout + --node-ready-timeout + 1m, the longest a repave can use it.")
	fs.StringVar(&o.RemoteWorkDir, "remote-work-dir", o.RemoteWorkDir, "Directory on servers for each Operation's payload and output; $HOME/.stargate/operations of the admin user when empty.")
	fs.Float32Var(&o.KubeAPIQPS, "repave-kube-api-qps", o.KubeAPIQPS, "Queries per second the repave reconciler may send to the API server (client-go's default of 5 throttles parallel repaves).")
	fs.IntVar(&o.KubeAPIBurst, "repave-kube-api-burst", o.KubeAPIBurst, "Burst of the repave reconciler's API client.")
	fs.DurationVar(&o.JumpConnectionIdle, "jump-connection-idle", o.JumpConnectionIdle, "How long an unused SSH connection to a DC router stays open for the next repave through it (repaves through one router share one connection; each server's own host key is still verified end to end); 0 opens one per repave.")
	fs.StringVar(&o.RebootCommand, "reboot-command", o.RebootCommand, "Shell command a Reboot Operation runs on the server, as the profile's admin user, after draining its Node; it is started detached, a second after the SSH session ends.")
	fs.StringVar(&o.ResetScriptFile, "reset-script", o.ResetScriptFile, "File of the shell script a Decommission runs on the server (bash, as the profile's admin user) to stop and disable the kubelet and remove its configuration and certificates; empty: the built-in reset for the built-in Ubuntu bootstrap.")
	fs.DurationVar(&o.DecommissionTimeout, "decommission-timeout", o.DecommissionTimeout, "How long a deleted Server that has a Node is held (finalizer stargate.io/decommission) while its Node is drained and its host reset; after it the Node is deleted anyway and a Warning event says what was left on the host.")
	fs.IntVar(&o.OutputTailBytes, "output-tail-bytes", o.OutputTailBytes, "How much of the script's output, redacted, is kept in Operation status.outputTail.")
}

// TokenLifetime is how long a bootstrap token is valid: --bootstrap-token-ttl,
// or when that is 0 the longest a repave can use its token (the script,
// then the wait for the Node) and a minute for the SSH connection and
// clocks. The token is deleted when its Operation ends in any case; the
// lifetime bounds a token that outlives a crashed controller.
func (o *Options) TokenLifetime() time.Duration {
	if o.TokenTTL > 0 {
		return o.TokenTTL
	}
	return o.ScriptTimeout + o.NodeReadyTimeout + time.Minute
}

// Validate checks the flags.
func (o *Options) Validate() error {
	var errs []error
	if o.ControlPlaneMode != ModeAKS && o.ControlPlaneMode != ModeSelfHosted {
		errs = append(errs, fmt.Errorf("--control-plane-mode must be %q or %q, not %q", ModeAKS, ModeSelfHosted, o.ControlPlaneMode))
	}
	if o.APIServerURL == "" {
		errs = append(errs, errors.New("--api-server-url is required: the API server URL workers join"))
	}
	if o.JumpConnectionIdle < 0 {
		errs = append(errs, errors.New("--jump-connection-idle must not be negative"))
	}
	if o.RebootCommand == "" {
		errs = append(errs, errors.New("--reboot-command must not be empty"))
	}
	if o.MaxConcurrentRepaves < 1 {
		errs = append(errs, errors.New("--max-concurrent-repaves must be at least 1"))
	}
	if o.TokenTTL < 0 || (o.TokenTTL > 0 && o.TokenTTL < o.ScriptTimeout+o.NodeReadyTimeout) {
		errs = append(errs, fmt.Errorf("--bootstrap-token-ttl %s is shorter than --bootstrap-script-timeout + --node-ready-timeout (%s): the kubelet could find its token expired; use 0 for the shortest safe lifetime",
			o.TokenTTL, o.ScriptTimeout+o.NodeReadyTimeout))
	}
	// Beyond the API's bound every status write of an Operation would be
	// refused.
	if o.OutputTailBytes < 1 || o.OutputTailBytes > validation.MaxOutputTailLength {
		errs = append(errs, fmt.Errorf("--output-tail-bytes must be between 1 and %d (the bound of status.outputTail), not %d", validation.MaxOutputTailLength, o.OutputTailBytes))
	}
	return errors.Join(errs...)
}

// SetupWithManager implements manager.Controller.
func (c *Controller) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := c.Opts.Validate(); err != nil {
		return err
	}
	// An own client, so the QPS limit fits parallel repaves; reads of
	// Nodes still come from the manager's cache.
	cfg := rest.CopyConfig(mgr.GetConfig())
	cfg.QPS, cfg.Burst = c.Opts.KubeAPIQPS, c.Opts.KubeAPIBurst
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	copts := client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: httpClient}
	reader, err := client.New(cfg, copts)
	if err != nil {
		return err
	}
	copts.Cache = &client.CacheOptions{Reader: mgr.GetCache()}
	cl, err := client.New(cfg, copts)
	if err != nil {
		return err
	}
	r := &Reconciler{
		Client:    cl,
		APIReader: reader,
		Direct:    reader,
		Recorder:  mgr.GetEventRecorder("stargate-controller"),
		Opts:      c.Opts,
		nodes:     newNodeWaiter(),
	}
	// The bootstrap RBAC is made once when this replica leads, so the first
	// repaves do not wait for it (they still would if it is not done yet).
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		log := ctrl.LoggerFrom(ctx).WithName("operations")
		for wait := time.Second; ; wait = min(2*wait, time.Minute) {
			err := r.ensureRBAC(ctx)
			if err == nil {
				return nil
			}
			log.Error(err, "make the bootstrap RBAC; retrying", "wait", wait)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
	})); err != nil {
		return err
	}
	if c.Opts.JumpConnectionIdle > 0 {
		r.Jumps = sshexec.NewJumpPool(c.Opts.JumpConnectionIdle)
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			<-ctx.Done()
			r.Jumps.Close()
			return nil
		})); err != nil {
			return err
		}
	}
	if c.Opts.ResetScriptFile != "" {
		b, err := os.ReadFile(c.Opts.ResetScriptFile)
		if err != nil {
			return fmt.Errorf("read --reset-script: %w", err)
		}
		r.reset = b
	}
	if c.Opts.APIServerCAFile != "" {
		ca, err := os.ReadFile(c.Opts.APIServerCAFile)
		if err != nil {
			return fmt.Errorf("read --api-server-ca-file: %w", err)
		}
		r.caPEM = ca
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("decommission").
		For(&stargatev1alpha1.Server{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: c.Opts.MaxConcurrentRepaves}).
		Complete(&serverDecommissioner{r: r}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("operations").
		// Only new Operations (and spec changes) start a reconcile: the
		// status writes of a running repave would each queue one more
		// reconcile that only reads the Operation again.
		For(&stargatev1alpha1.Operation{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Node{}, r.nodes.handler()).
		// A deleted Operation ends its run at once (the queue would only
		// reconcile it after the run).
		Watches(&stargatev1alpha1.Operation{}, handler.Funcs{
			DeleteFunc: func(_ context.Context, e event.DeleteEvent, _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.cancelDeleted(e.Object.GetUID())
			},
		}).
		WithOptions(controller.Options{MaxConcurrentReconciles: c.Opts.MaxConcurrentRepaves}).
		Complete(r)
}

// Reconciler runs Operations.
type Reconciler struct {
	Client    client.Client
	APIReader client.Reader
	// Direct reads and writes around the cache; Client when nil.
	Direct   client.Client
	Recorder events.EventRecorder
	Opts     *Options
	// Dial opens SSH's first TCP connection; nil uses a net.Dialer.
	Dial sshexec.DialFunc
	// Jumps shares connections to DC routers among repaves; nil opens one
	// per repave.
	Jumps *sshexec.JumpPool

	caPEM []byte
	// reset is --reset-script's content; bootstrap.ResetScript when nil.
	reset  []byte
	rbacMu sync.Mutex
	rbacOK bool
	nodes  *nodeWaiter
	// running maps the UID of each Operation being reconciled to the
	// cancel function of its run.
	running sync.Map
}

// cancelDeleted ends the run of the deleted Operation uid, if one runs:
// it then stops its script on the host and deletes its token.
func (r *Reconciler) cancelDeleted(uid types.UID) {
	if c, ok := r.running.Load(uid); ok {
		c.(context.CancelCauseFunc)(errOperationDeleted)
	}
}

// nodeWaiter wakes repaves waiting for a Node when it changes.
type nodeWaiter struct {
	mu      sync.Mutex
	waiters map[string][]chan struct{}
}

func newNodeWaiter() *nodeWaiter { return &nodeWaiter{waiters: map[string][]chan struct{}{}} }

// wait returns a channel closed when Node name changes, and the function
// that unregisters it: call it when done waiting, or the channel stays
// registered until the Node changes, which may be never.
func (w *nodeWaiter) wait(name string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	w.waiters[name] = append(w.waiters[name], ch)
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		chs := w.waiters[name]
		for i, c := range chs {
			if c == ch {
				chs = append(chs[:i], chs[i+1:]...)
				break
			}
		}
		if len(chs) == 0 {
			delete(w.waiters, name)
		} else {
			w.waiters[name] = chs
		}
	}
}

// registered is the number of registered waiters.
func (w *nodeWaiter) registered() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, chs := range w.waiters {
		n += len(chs)
	}
	return n
}

func (w *nodeWaiter) notify(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ch := range w.waiters[name] {
		close(ch)
	}
	delete(w.waiters, name)
}

// handler notifies waiters and enqueues nothing: a repave waits in its own
// reconcile.
func (w *nodeWaiter) handler() handler.EventHandler {
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			w.notify(e.Object.GetName())
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			w.notify(e.ObjectNew.GetName())
		},
	}
}

func (r *Reconciler) resetScript() []byte {
	if r.reset != nil {
		return r.reset
	}
	return bootstrap.ResetScript
}
