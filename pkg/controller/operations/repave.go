package operations

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/go-logr/logr"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/bootstrap"
	"github.com/stargate-k8s/stargate/pkg/cilium"
	"github.com/stargate-k8s/stargate/pkg/controller/datacenter"
	"github.com/stargate-k8s/stargate/pkg/controller/serverstatus"
	"github.com/stargate-k8s/stargate/pkg/sshexec"
)

// Steps of a repave, in order.
const (
	StepResolve     = "ResolveReferences"
	StepConnect     = "Connect"
	StepToken       = "CreateBootstrapToken"
	StepStaleNode   = "RemoveStaleNode"
	StepScript      = "RunBootstrapScript"
	StepWaitForNode = "WaitForNodeReady"
)

// RepaveSteps lists the steps of a repave in the order they run.
var RepaveSteps = []string{StepResolve, StepConnect, StepToken, StepStaleNode, StepScript, StepWaitForNode}

// Reasons of a failed Operation (condition Succeeded=False) and of the
// Server's Provisioned condition.
const (
	ReasonServerNotFound       = "ServerNotFound"
	ReasonProfileNotFound      = "ProfileNotFound"
	ReasonCredentialsNotFound  = "CredentialsNotFound"
	ReasonCredentialsInvalid   = "CredentialsInvalid"
	ReasonScriptNotFound       = "BootstrapScriptNotFound"
	ReasonHostKeyMismatch      = "HostKeyMismatch"
	ReasonHostKeyUnknown       = "HostKeyUnknown"
	ReasonUnreachable          = "Unreachable"
	ReasonAuthenticationFailed = "AuthenticationFailed"
	ReasonNodeConflict         = stargate.ReasonNodeNameConflict
	ReasonScriptFailed         = "BootstrapScriptFailed"
	ReasonNodeNotReady         = "NodeNotReady"
	ReasonInternal             = "InternalError"
	ReasonUnsupported          = "UnsupportedOperation"
	ReasonSucceeded            = "Succeeded"
	ReasonProvisioning         = "Provisioning"
	ReasonNodeReady            = "KubeletReady"
	// ReasonNoDatacenter and ReasonNotInDatacenterNetwork fail the repave
	// of a Server that is not in its datacenter, as its InDatacenter
	// condition says.
	ReasonNoDatacenter           = stargate.ReasonNoDatacenter
	ReasonNotInDatacenterNetwork = stargate.ReasonNotInDatacenterNetwork
)

// Secret keys of the SSH credentials.
const (
	SecretKeyPrivateKey = corev1.SSHAuthPrivateKey
	SecretKeyKnownHosts = "known_hosts"
)

// failure is an error that fails the Operation with a reason.
type failure struct {
	reason string
	err    error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func fail(reason string, format string, args ...any) error {
	return &failure{reason: reason, err: fmt.Errorf(format, args...)}
}

// repave is one run of a repave Operation within one reconcile.
type repave struct {
	r  *Reconciler
	op *v1.Operation
	// opName is op.Name for what runs beside the steps: op itself is
	// rewritten by every status write.
	opName string
	log    logr.Logger

	server  *v1.Server
	profile *v1.ProvisioningProfile
	signer  ssh.Signer
	known   []byte
	script  []byte
	redact  *redactor
	ssh     *sshexec.Client

	resumedSteps map[string]bool
	// startedHere are steps this run recorded as Running itself.
	startedHere map[string]bool
	// token is the bootstrap token Secret of this Operation when this run
	// made or found it; tokenOnly says this run made it, so it is the only
	// one.
	token      *corev1.Secret
	tokenOnly  bool
	tokenValue *bootstrap.Token
	// serverDone is closed when the Server's Provisioning status is
	// written (in the background, while the steps run); serverWritten is
	// the Server as that write left it, where the result starts from.
	serverDone    chan struct{}
	serverWritten *v1.Server

	stepTimes []any
	// scriptPhases times the script step from its start: the payload
	// built, the first line of output read, the result line read.
	scriptPhases []any
	scriptTime   time.Duration
	nodeWait     time.Duration
	// statusWrites and statusWriteTime count the Operation's status
	// writes; finishTime is the time finish took.
	statusWrites    int
	statusWriteTime time.Duration
	finishTime      time.Duration
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// Read around the cache: the cache may not yet show what this
	// controller wrote a moment ago, and acting on an old status could run
	// a step twice.
	op := &v1.Operation{}
	if err := r.APIReader.Get(ctx, req.NamespacedName, op); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !stargate.OperationPhase(op.Status.Phase).IsActive() {
		return ctrl.Result{}, nil
	}
	log := logf.FromContext(ctx).WithValues("operation", klogRef(op), "server", op.Spec.ServerRef.Name)
	rp := &repave{r: r, op: op, opName: op.Name, log: log, redact: newRedactor(), resumedSteps: map[string]bool{}, startedHere: map[string]bool{}}
	defer func() {
		if rp.ssh != nil {
			_ = rp.ssh.Close()
		}
		rp.waitServer()
	}()
	return ctrl.Result{}, rp.run(ctx)
}

func klogRef(o client.Object) string { return o.GetNamespace() + "/" + o.GetName() }

func (p *repave) run(ctx context.Context) error {
	start := time.Now()
	if p.op.Spec.Operation != "" && p.op.Spec.Operation != v1.OperationRepave {
		return p.finish(ctx, "", fail(ReasonUnsupported, "operation %q is not supported; only Repave is", p.op.Spec.Operation))
	}
	first := p.op.Status.Phase == "" || p.op.Status.Phase == v1.OperationPending
	if first {
		now := metav1.Now()
		p.op.Status.Phase = v1.OperationRunning
		p.op.Status.StartTime = &now
		p.op.Status.Steps = nil
		for _, s := range RepaveSteps {
			p.op.Status.Steps = append(p.op.Status.Steps, v1.OperationStep{Name: s, State: v1.StepPending})
		}
		p.op.Status.Message = "repave started"
		p.log.Info("repave started")
	} else {
		p.log.Info("resuming repave", "steps", stepSummary(p.op))
	}

	// References are read on every run (a resumed run needs them too).
	// The first run records the step when it is done, in the write that
	// starts the next: it only reads, so the Operation's start, its end
	// and the next step's start go in one write, and a run that stops
	// before that write left nothing to find.
	resolveStart := metav1.Now()
	if err := p.resolve(ctx); err != nil {
		return p.finish(ctx, StepResolve, err)
	}
	if first {
		s := p.findStep(StepResolve)
		s.State, s.StartTime = v1.StepRunning, &resolveStart
		p.startedHere[StepResolve] = true
		p.r.Recorder.Eventf(p.server, p.op, corev1.EventTypeNormal, "RepaveStarted", "Repave", "Operation %s started a repave", p.op.Name)
		// The Server's status is no step: it is written while the first
		// steps run, and finished before the result is written.
		p.serverDone = make(chan struct{})
		go func() {
			defer close(p.serverDone)
			if err := p.setServerProvisioning(ctx); err != nil {
				p.log.Error(err, "set Server status Provisioning")
			}
		}()
	}
	for _, s := range []struct {
		name string
		fn   func(context.Context) (string, error)
	}{
		{StepResolve, func(context.Context) (string, error) {
			return fmt.Sprintf("server %s, profile %s, credentials %s", p.server.Name, p.profile.Name, p.profile.Spec.SSHCredentialsSecretRef.Name), nil
		}},
		{StepConnect, p.connect},
		{StepToken, p.createToken},
		{StepStaleNode, p.removeStaleNode},
		{StepScript, p.runScript},
		{StepWaitForNode, p.waitForNode},
	} {
		if err := p.step(ctx, s.name, s.fn); err != nil {
			if ctx.Err() != nil {
				// Shutting down: leave the Operation as it is, to resume.
				return err
			}
			var f *failure
			if !errors.As(err, &f) && isRetriable(err) {
				return err
			}
			return p.finish(ctx, s.name, err)
		}
	}
	err := p.finish(ctx, "", nil)
	wall := time.Since(start)
	p.log.Info("repave finished", "wall", wall, "script", p.scriptTime, "nodeWait", p.nodeWait,
		"overhead", wall-p.scriptTime-p.nodeWait, "steps", p.stepTimes, "scriptStep", p.scriptPhases,
		"statusWrites", p.statusWrites, "statusWriteTime", p.statusWriteTime, "finish", p.finishTime)
	return err
}

// isRetriable says whether an error of the API server should be retried by
// requeueing rather than fail the Operation.
func isRetriable(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsTimeout(err)
}

func stepSummary(op *v1.Operation) string {
	var b strings.Builder
	for _, s := range op.Status.Steps {
		fmt.Fprintf(&b, "%s=%s ", s.Name, s.State)
	}
	return strings.TrimSpace(b.String())
}

// stepState is the recorded state of a step; Pending when not recorded.
func (p *repave) stepState(name string) v1.StepState {
	for _, s := range p.op.Status.Steps {
		if s.Name == name {
			return s.State
		}
	}
	return v1.StepPending
}

func (p *repave) findStep(name string) *v1.OperationStep {
	for i := range p.op.Status.Steps {
		if p.op.Status.Steps[i].Name == name {
			return &p.op.Status.Steps[i]
		}
	}
	p.op.Status.Steps = append(p.op.Status.Steps, v1.OperationStep{Name: name, State: v1.StepPending})
	return &p.op.Status.Steps[len(p.op.Status.Steps)-1]
}

// step runs fn unless the step already succeeded, recording it as Running
// before fn starts and Succeeded after.
func (p *repave) step(ctx context.Context, name string, fn func(context.Context) (string, error)) error {
	s := p.findStep(name)
	if s.State == v1.StepSucceeded {
		return nil
	}
	if s.State == v1.StepRunning && !p.startedHere[name] {
		// An earlier run started this step and did not record its end.
		p.resumedSteps[name] = true
	} else if s.State != v1.StepRunning {
		now := metav1.Now()
		s.State, s.StartTime, s.Message = v1.StepRunning, &now, ""
		if err := p.updateStatus(ctx); err != nil {
			return err
		}
	}
	began := time.Now()
	msg, err := fn(ctx)
	p.stepTimes = append(p.stepTimes, name, time.Since(began).Round(time.Millisecond).String())
	if err != nil {
		return err
	}
	s = p.findStep(name)
	now := metav1.Now()
	s.State, s.CompletionTime, s.Message = v1.StepSucceeded, &now, p.redact.String(msg)
	p.log.V(1).Info("step succeeded", "step", name)
	// Written together with the next step's start (or the end): one write
	// per step. A crash in between repeats at most the check of this step,
	// and every step is written so that repeating it does nothing twice.
	return nil
}

func (p *repave) updateStatus(ctx context.Context) error {
	p.op.Status.Message = p.redact.String(p.op.Status.Message)
	began := time.Now()
	err := p.r.Client.Status().Update(ctx, p.op)
	p.statusWrites++
	p.statusWriteTime += time.Since(began)
	if err != nil {
		return fmt.Errorf("update status of Operation %s: %w", p.op.Name, err)
	}
	return nil
}

// getAll reads objects around the cache at the same time: each read is a
// round trip through the aggregator, and these do not depend on each other.
func (p *repave) getAll(gets ...func() error) []error {
	errs := make([]error, len(gets))
	var wg sync.WaitGroup
	for i, g := range gets[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i+1] = g()
		}()
	}
	errs[0] = gets[0]()
	wg.Wait()
	return errs
}

func (p *repave) resolve(ctx context.Context) error {
	ns := p.op.Namespace
	p.server = &v1.Server{}
	p.profile = &v1.ProvisioningProfile{}
	var dc *v1.Datacenter
	errs := p.getAll(
		func() error {
			return p.r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: p.op.Spec.ServerRef.Name}, p.server)
		},
		func() error {
			return p.r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: p.op.Spec.ProvisioningProfileRef.Name}, p.profile)
		},
		// Around the cache too: a refusal fails the Operation for good.
		func() (err error) {
			dc, err = datacenter.Find(ctx, p.r.APIReader, ns)
			return err
		})
	if err := errs[0]; err != nil {
		p.server = nil
		if apierrors.IsNotFound(err) {
			return fail(ReasonServerNotFound, "Server %s/%s (spec.serverRef) does not exist", ns, p.op.Spec.ServerRef.Name)
		}
		return err
	}
	// Only a Server of a declared datacenter, inside its network, is
	// repaved: decided before anything else, so nothing (no token, no SSH)
	// exists for any other.
	if err := errs[2]; err != nil {
		return err
	}
	if c := datacenter.Check(p.server, dc); c.Status != metav1.ConditionTrue {
		return fail(c.Reason, "%s", c.Message)
	}
	if err := errs[1]; err != nil {
		if apierrors.IsNotFound(err) {
			return fail(ReasonProfileNotFound, "ProvisioningProfile %s/%s (spec.provisioningProfileRef) does not exist", ns, p.op.Spec.ProvisioningProfileRef.Name)
		}
		return err
	}
	ref := p.profile.Spec.SSHCredentialsSecretRef
	if ref == nil || ref.Name == "" {
		return fail(ReasonCredentialsNotFound, "ProvisioningProfile %s names no SSH credentials Secret (spec.sshCredentialsSecretRef)", p.profile.Name)
	}
	var secret corev1.Secret
	var cm corev1.ConfigMap
	sr := p.profile.Spec.BootstrapScriptRef
	gets := []func() error{func() error {
		return p.r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, &secret)
	}}
	if sr != nil {
		gets = append(gets, func() error {
			return p.r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: sr.Name}, &cm)
		})
	}
	errs = p.getAll(gets...)
	if err := errs[0]; err != nil {
		if apierrors.IsNotFound(err) {
			return fail(ReasonCredentialsNotFound, "SSH credentials Secret %s/%s (ProvisioningProfile %s spec.sshCredentialsSecretRef) does not exist", ns, ref.Name, p.profile.Name)
		}
		return err
	}
	if secret.Type != corev1.SecretTypeSSHAuth {
		return fail(ReasonCredentialsInvalid, "Secret %s/%s has type %q, want %s", ns, ref.Name, secret.Type, corev1.SecretTypeSSHAuth)
	}
	key := secret.Data[SecretKeyPrivateKey]
	p.redact.AddPrivateKey(key)
	signer, err := sshexec.ParsePrivateKey(key)
	if err != nil {
		return fail(ReasonCredentialsInvalid, "Secret %s/%s key %s: %v", ns, ref.Name, SecretKeyPrivateKey, err)
	}
	p.signer = signer
	p.known = secret.Data[SecretKeyKnownHosts]
	if _, err := sshexec.KnownHosts(p.known); err != nil {
		return fail(ReasonCredentialsInvalid, "Secret %s/%s key %s: %v", ns, ref.Name, SecretKeyKnownHosts, err)
	}
	if p.profile.Spec.AdminUsername == "" {
		return fail(ReasonCredentialsInvalid, "ProvisioningProfile %s has no spec.adminUsername", p.profile.Name)
	}
	p.script = bootstrap.UbuntuScript
	if sr != nil {
		if err := errs[1]; err != nil {
			if apierrors.IsNotFound(err) {
				return fail(ReasonScriptNotFound, "ConfigMap %s/%s (ProvisioningProfile %s spec.bootstrapScriptRef) does not exist", ns, sr.Name, p.profile.Name)
			}
			return err
		}
		s, ok := cm.Data[sr.Key]
		if !ok {
			return fail(ReasonScriptNotFound, "ConfigMap %s/%s has no key %q (ProvisioningProfile %s spec.bootstrapScriptRef)", ns, sr.Name, sr.Key, p.profile.Name)
		}
		p.script = []byte(s)
	}
	return p.checkNodeName(ctx)
}

// checkNodeName refuses, before any token exists, a hostname that another
// Server (in any namespace) also claims or that names a Node Stargate did
// not make for this Server: the token would otherwise buy that identity,
// and RemoveStaleNode would delete another machine's Node.
func (p *repave) checkNodeName(ctx context.Context) error {
	name := p.nodeName()
	var servers v1.ServerList
	if err := p.r.Client.List(ctx, &servers); err != nil {
		return fmt.Errorf("list Servers to check that hostname %s is unique: %w", name, err)
	}
	for _, s := range servers.Items {
		if s.Spec.Hostname == name && (s.Namespace != p.server.Namespace || s.Name != p.server.Name) {
			return fail(ReasonNodeConflict, "spec.hostname %s is also the hostname of Server %s/%s; a node name belongs to one Server: rename one of them", name, s.Namespace, s.Name)
		}
	}
	_, err := p.ownNode(ctx)
	return err
}

// ownNode reads the Node of the Server's hostname: nil when there is none,
// a NodeNameConflict failure when it is not the one Stargate made for this
// Server (it lacks the Server's owner labels), since another machine uses
// the name.
func (p *repave) ownNode(ctx context.Context) (*corev1.Node, error) {
	var node corev1.Node
	err := p.r.APIReader.Get(ctx, types.NamespacedName{Name: p.nodeName()}, &node)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get Node %s: %w", p.nodeName(), err)
	}
	if !cilium.Owned(node.Labels, stargate.OwnerLabels(p.server.Name, p.server.Namespace)) {
		return nil, fail(ReasonNodeConflict, "Node %s exists but is not labelled %s=%s, %s=%s: another machine uses this name; rename spec.hostname or delete that Node",
			node.Name, stargate.LabelServer, p.server.Name, stargate.LabelDatacenter, p.server.Namespace)
	}
	return &node, nil
}

func (p *repave) sshConfig() (sshexec.Config, error) {
	spec := p.server.Spec
	port := int(spec.SSHPort)
	if port == 0 {
		port = 22
	}
	target, err := sshexec.HostKeyCallback(spec.HostKey, p.known)
	if err != nil {
		return sshexec.Config{}, fail(ReasonCredentialsInvalid, "host key of server %s: %v", p.server.Name, err)
	}
	cfg := sshexec.Config{
		User:             p.profile.Spec.AdminUsername,
		Signer:           p.signer,
		Target:           sshexec.Endpoint{Addr: net.JoinHostPort(spec.IPAddress, strconv.Itoa(port)), HostKey: target},
		Dial:             p.r.Dial,
		HandshakeTimeout: p.r.Opts.SSHHandshakeTimeout,
		Attempts:         p.r.Opts.SSHAttempts,
		Backoff:          p.r.Opts.SSHBackoff,
		OnRetry: func(attempt int, err error, wait time.Duration) {
			p.log.Info("SSH connection failed, retrying", "attempt", attempt, "wait", wait, "error", p.redact.String(err.Error()))
		},
	}
	if spec.RouterIP != "" {
		jump, err := sshexec.KnownHosts(p.known)
		if err != nil {
			return cfg, err
		}
		// Repaves share a router connection only when they verify the
		// router against the same known_hosts data.
		sum := sha256.Sum256(p.known)
		cfg.Jump = &sshexec.Endpoint{Addr: net.JoinHostPort(spec.RouterIP, strconv.Itoa(p.r.Opts.RouterSSHPort)), HostKey: jump, HostKeyID: "known_hosts:" + hex.EncodeToString(sum[:])}
		cfg.JumpPool = p.r.Jumps
	}
	return cfg, nil
}

// dial connects over SSH, classifying what cannot be retried.
func (p *repave) dial(ctx context.Context) (*sshexec.Client, error) {
	if p.ssh != nil {
		return p.ssh, nil
	}
	cfg, err := p.sshConfig()
	if err != nil {
		return nil, err
	}
	c, err := sshexec.Connect(ctx, cfg)
	if err != nil {
		var mm *sshexec.HostKeyMismatchError
		var uk *sshexec.HostKeyUnknownError
		switch {
		case ctx.Err() != nil:
			return nil, err
		case errors.As(err, &mm):
			return nil, &failure{reason: ReasonHostKeyMismatch, err: fmt.Errorf("%w; no command was run. If the server was reinstalled, update spec.hostKey or the known_hosts entry", err)}
		case errors.As(err, &uk):
			return nil, &failure{reason: ReasonHostKeyUnknown, err: err}
		case sshexec.IsPermanent(err):
			return nil, &failure{reason: ReasonAuthenticationFailed, err: fmt.Errorf("%s refused the SSH key of Secret %s as user %s: %w", cfg.Target.Addr, p.profile.Spec.SSHCredentialsSecretRef.Name, cfg.User, err)}
		default:
			via := ""
			if cfg.Jump != nil {
				via = " through router " + cfg.Jump.Addr
			}
			return nil, &failure{reason: ReasonUnreachable, err: fmt.Errorf("cannot reach %s%s: %w", cfg.Target.Addr, via, err)}
		}
	}
	p.ssh = c
	return c, nil
}

func (p *repave) connect(ctx context.Context) (string, error) {
	if _, err := p.dial(ctx); err != nil {
		return "", err
	}
	via := ""
	if p.server.Spec.RouterIP != "" {
		via = " through router " + p.server.Spec.RouterIP
	}
	// Through a jump host the client's RemoteAddr is the channel's
	// (0.0.0.0:0), so name the server's own address.
	addr := net.JoinHostPort(p.server.Spec.IPAddress, strconv.Itoa(int(p.server.Spec.SSHPort)))
	return fmt.Sprintf("connected to %s%s as %s; host key verified (%s)", addr, via, p.profile.Spec.AdminUsername, hostKeyKind(p.server.Spec.HostKey)), nil
}

func hostKeyKind(pinned string) string {
	if pinned != "" {
		return "pinned spec.hostKey"
	}
	return "known_hosts"
}

func (p *repave) tokenLabels() map[string]string {
	return map[string]string{
		bootstrap.LabelOperation:  string(p.op.UID),
		bootstrap.LabelServer:     p.server.Name,
		bootstrap.LabelDatacenter: p.server.Namespace,
	}
}

// existingToken finds the token Secret this Operation made, if any.
func (p *repave) existingToken(ctx context.Context) (*corev1.Secret, error) {
	var list corev1.SecretList
	if err := p.r.APIReader.List(ctx, &list, client.InNamespace(bootstrap.TokenNamespace),
		client.MatchingLabels{bootstrap.LabelOperation: string(p.op.UID)}); err != nil {
		return nil, fmt.Errorf("list bootstrap tokens: %w", err)
	}
	if len(list.Items) == 0 {
		return nil, nil
	}
	return &list.Items[0], nil
}

// ensureRBAC makes the bootstrap RBAC once per process. It reads around
// the cache: a cached read would start an informer on every
// ClusterRoleBinding for three reads.
func (r *Reconciler) ensureRBAC(ctx context.Context) error {
	r.rbacMu.Lock()
	defer r.rbacMu.Unlock()
	if r.rbacOK {
		return nil
	}
	c := r.Direct
	if c == nil {
		c = r.Client
	}
	if err := bootstrap.EnsureRBAC(ctx, c); err != nil {
		return err
	}
	r.rbacOK = true
	return nil
}

func (p *repave) createToken(ctx context.Context) (string, error) {
	if err := p.r.ensureRBAC(ctx); err != nil {
		return "", err
	}
	// A run interrupted after creating the Secret finds it again instead
	// of making a second token. Only a run that recorded this step as
	// Running can have made one, so a fresh step need not look.
	if p.resumedSteps[StepToken] {
		if s, err := p.existingToken(ctx); err != nil {
			return "", err
		} else if s != nil {
			p.token = s
			return fmt.Sprintf("bootstrap token %s exists (group %s)", s.Name, bootstrap.Group), nil
		}
	}
	t, err := bootstrap.NewToken()
	if err != nil {
		return "", err
	}
	p.redact.AddToken(t)
	expires := time.Now().Add(p.r.Opts.TokenLifetime())
	s := bootstrap.TokenSecret(t, expires, fmt.Sprintf("stargate repave %s/%s of server %s", p.op.Namespace, p.op.Name, p.server.Name), p.tokenLabels())
	if err := p.r.Client.Create(ctx, s); err != nil {
		return "", fmt.Errorf("create bootstrap token Secret: %w", err)
	}
	p.token, p.tokenOnly, p.tokenValue = s, !p.resumedSteps[StepToken], &t
	return fmt.Sprintf("bootstrap token %s created for group %s, expires %s", s.Name, bootstrap.Group, expires.UTC().Format(time.RFC3339)), nil
}

func (p *repave) nodeName() string { return p.server.Spec.Hostname }

func (p *repave) removeStaleNode(ctx context.Context) (string, error) {
	node, err := p.ownNode(ctx)
	if err != nil {
		return "", err
	}
	if node == nil {
		return fmt.Sprintf("no Node %s to remove", p.nodeName()), nil
	}
	if err := p.r.Client.Delete(ctx, node, client.Preconditions{UID: &node.UID}); err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("delete Node %s: %w", node.Name, err)
	}
	return fmt.Sprintf("deleted the Node %s of the previous install", node.Name), nil
}

func (p *repave) cluster(ctx context.Context) (bootstrap.Cluster, error) {
	ca := p.r.caPEM
	if len(ca) == 0 {
		var cm corev1.ConfigMap
		// Around the cache: a cached read would list and watch every
		// ConfigMap of the cluster for this one.
		if err := p.r.APIReader.Get(ctx, types.NamespacedName{Namespace: metav1.NamespaceSystem, Name: "kube-root-ca.crt"}, &cm); err != nil {
			return bootstrap.Cluster{}, fmt.Errorf("no --api-server-ca-file and cannot read kube-system/kube-root-ca.crt: %w", err)
		}
		ca = []byte(cm.Data["ca.crt"])
	}
	return bootstrap.Cluster{Server: p.r.Opts.APIServerURL, CAData: ca, TLSServerName: p.r.Opts.APIServerTLSServerName}, nil
}

func (p *repave) payload(ctx context.Context) ([]byte, error) {
	var t bootstrap.Token
	if p.tokenValue != nil {
		// Made a moment ago by this run.
		t = *p.tokenValue
	} else {
		s := p.token
		if s == nil {
			var err error
			if s, err = p.existingToken(ctx); err != nil {
				return nil, err
			}
		}
		if s == nil {
			return nil, fail(ReasonInternal, "the bootstrap token of this Operation is gone (deleted or expired) before the script started; repave again")
		}
		var err error
		if t, err = bootstrap.TokenFromSecret(s); err != nil {
			return nil, fail(ReasonInternal, "%v", err)
		}
	}
	p.redact.AddToken(t)
	cl, err := p.cluster(ctx)
	if err != nil {
		return nil, err
	}
	kc, err := bootstrap.Kubeconfig(cl, t)
	if err != nil {
		return nil, err
	}
	var taints []string
	for _, t := range p.profile.Spec.NodeTaints {
		taints = append(taints, fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect))
	}
	nc := bootstrap.NodeConfig{
		NodeName:          p.nodeName(),
		Server:            p.server.Name,
		Datacenter:        p.server.Namespace,
		NodeIP:            p.server.Spec.IPAddress,
		KubernetesVersion: p.profile.Spec.KubernetesVersion,
		ContainerRuntime:  string(p.profile.Spec.ContainerRuntime),
		ClusterDNS:        p.r.Opts.ClusterDNS,
		Labels:            p.profile.Spec.NodeLabels,
		Taints:            taints,
	}
	nc.OmitAzureLabel = p.r.Opts.ControlPlaneMode != ModeAKS
	return bootstrap.Payload(p.script, nc, kc, cl.CAData)
}

func (p *repave) runScript(ctx context.Context) (string, error) {
	c, err := p.dial(ctx)
	if err != nil {
		return "", err
	}
	dir := bootstrap.WorkDir(p.r.Opts.RemoteWorkDir, string(p.op.UID))
	started := false
	if p.resumedSteps[StepScript] {
		out, err := c.Output(ctx, bootstrap.StartedCommand(dir))
		if err != nil {
			return "", fmt.Errorf("check whether the script started: %w", err)
		}
		started = strings.TrimSpace(string(out)) == "started"
	}
	began := time.Now()
	phase := func(name string) {
		p.scriptPhases = append(p.scriptPhases, name, time.Since(began).Round(time.Millisecond).String())
	}
	var stdin io.Reader = bytes.NewReader(nil)
	if !started {
		payload, err := p.payload(ctx)
		if err != nil {
			return "", err
		}
		stdin = bytes.NewReader(payload)
	} else {
		p.log.Info("the bootstrap script already started; following it")
	}
	sctx, cancel := context.WithTimeout(ctx, p.r.Opts.ScriptTimeout)
	defer cancel()
	tail := newTail(p.r.Opts.OutputTailBytes, p.redact)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	// rctx ends the session as soon as the result is in: the runner on the
	// server only tidies up after that.
	rctx, rcancel := context.WithCancel(sctx)
	defer rcancel()
	phase("payload")
	go func() {
		err := c.Run(rctx, bootstrap.RunCommand(dir), stdin, pw, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	var result string
	lastFlush := time.Now()
	// Over-long lines come in pieces, so one huge line cannot hide the
	// result line after it.
	sc := bootstrap.NewOutputScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if len(p.scriptPhases) == 2 {
			phase("firstOutput")
		}
		if r, ok := strings.CutPrefix(line, bootstrap.ResultPrefix(string(p.op.UID))); ok {
			result = r
			if _, _, err := bootstrap.ParseResult(r); err == nil {
				phase("result")
				rcancel()
				pr.CloseWithError(io.EOF)
				break
			}
			continue
		}
		tail.Add(line)
		if time.Since(lastFlush) > 2*time.Second {
			p.op.Status.OutputTail = tail.String()
			if err := p.updateStatus(ctx); err != nil {
				p.log.Error(err, "stream script output into status")
			}
			lastFlush = time.Now()
		}
	}
	if result == "" {
		_, _ = io.Copy(io.Discard, pr)
	}
	runErr := <-done
	p.op.Status.OutputTail = tail.String()
	if result == "" {
		if sctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			return "", fail(ReasonScriptFailed, "the bootstrap script did not finish within %s (--bootstrap-script-timeout); see status.outputTail", p.r.Opts.ScriptTimeout)
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		// The session broke (network, sshd restart): the script goes on
		// on the server; the next reconcile follows it again.
		_ = c.Close()
		p.ssh = nil
		return "", fmt.Errorf("lost the SSH session while the script ran: %v", runErr)
	}
	code, d, err := bootstrap.ParseResult(result)
	if err != nil {
		return "", fail(ReasonInternal, "%v", err)
	}
	p.scriptTime = d
	if code != 0 {
		return "", fail(ReasonScriptFailed, "the bootstrap script exited with status %d after %s; see status.outputTail", code, d.Round(time.Millisecond))
	}
	return fmt.Sprintf("the bootstrap script succeeded in %s", d.Round(time.Millisecond)), nil
}

func (p *repave) waitForNode(ctx context.Context) (string, error) {
	start := time.Now()
	defer func() { p.nodeWait = time.Since(start) }()
	deadline := time.NewTimer(p.r.Opts.NodeReadyTimeout)
	defer deadline.Stop()
	name := p.nodeName()
	for {
		changed := p.r.nodes.wait(name)
		var node corev1.Node
		err := p.r.Client.Get(ctx, types.NamespacedName{Name: name}, &node)
		lastState := "has not registered"
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return "", err
		case node.Labels[stargate.LabelServer] != p.server.Name:
			return "", fail(ReasonNodeConflict, "Node %s registered without label %s=%s: another machine took the name", name, stargate.LabelServer, p.server.Name)
		default:
			ready := nodeReady(&node)
			if ready != nil && ready.Status == corev1.ConditionTrue {
				return fmt.Sprintf("Node %s is Ready", name), nil
			}
			lastState = "registered but is not Ready"
			if ready != nil && ready.Message != "" {
				lastState += ": " + ready.Message
			}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-deadline.C:
			return "", fail(ReasonNodeNotReady, "Node %s %s within %s (--node-ready-timeout); check kubelet on the server (journalctl -u kubelet)", name, lastState, p.r.Opts.NodeReadyTimeout)
		case <-changed:
		case <-time.After(5 * time.Second):
		}
	}
}

func nodeReady(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// finish ends the Operation: Succeeded when err is nil, else Failed at
// stepName. It deletes the bootstrap token and updates the Server.
func (p *repave) finish(ctx context.Context, stepName string, err error) error {
	began := time.Now()
	defer func() { p.finishTime = time.Since(began) }()
	now := metav1.Now()
	p.op.Status.CompletionTime = &now
	cond := metav1.Condition{Type: stargate.ConditionSucceeded, ObservedGeneration: p.op.Generation}
	if err == nil {
		p.op.Status.Phase = v1.OperationSucceeded
		p.op.Status.Message = fmt.Sprintf("server %s is Node %s, Ready", p.server.Name, p.nodeName())
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, ReasonSucceeded, p.op.Status.Message
	} else {
		reason := ReasonInternal
		var f *failure
		if errors.As(err, &f) {
			reason = f.reason
		}
		msg := p.redact.String(err.Error())
		if stepName != "" {
			s := p.findStep(stepName)
			s.State, s.CompletionTime, s.Message = v1.StepFailed, &now, msg
			if s.StartTime == nil {
				s.StartTime = &now
			}
			msg = stepName + " failed: " + msg
		}
		p.op.Status.Phase = v1.OperationFailed
		p.op.Status.Message = msg
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reason, msg
	}
	meta.SetStatusCondition(&p.op.Status.Conditions, cond)
	// The token goes and the Server gets the result at the same time, both
	// before the Operation ends: who sees it ended sees the Server's
	// status too, and a token that cannot be deleted keeps the Operation
	// active, so it is not forgotten.
	var serverErr error
	var wg sync.WaitGroup
	if p.server != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serverErr = p.setServerResult(ctx, cond)
		}()
	}
	tokenErr := p.deleteTokens(ctx)
	wg.Wait()
	if serverErr != nil {
		p.log.Error(serverErr, "update Server status")
	}
	if tokenErr != nil {
		return tokenErr
	}
	if err := p.updateStatus(ctx); err != nil {
		return err
	}
	if err == nil {
		p.r.Recorder.Eventf(p.op, nil, corev1.EventTypeNormal, "Succeeded", "Repave", "%s", cond.Message)
		if p.server != nil {
			p.r.Recorder.Eventf(p.server, p.op, corev1.EventTypeNormal, "Repaved", "Repave", "Operation %s: %s", p.op.Name, cond.Message)
		}
		p.log.Info("repave succeeded")
	} else {
		p.r.Recorder.Eventf(p.op, nil, corev1.EventTypeWarning, cond.Reason, "Repave", "%s", cond.Message)
		if p.server != nil {
			p.r.Recorder.Eventf(p.server, p.op, corev1.EventTypeWarning, "RepaveFailed", "Repave", "Operation %s: %s", p.op.Name, cond.Message)
		}
		p.log.Info("repave failed", "reason", cond.Reason, "message", cond.Message)
	}
	return nil
}

func (p *repave) deleteTokens(ctx context.Context) error {
	switch {
	case p.tokenOnly:
		// Made by this run, which would have found any earlier one.
		if err := p.r.Client.Delete(ctx, p.token); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete bootstrap token Secret %s: %w", p.token.Name, err)
		}
		return nil
	case p.stepState(StepToken) == v1.StepPending:
		// The step never started: no run made a token.
		return nil
	}
	var list corev1.SecretList
	if err := p.r.APIReader.List(ctx, &list, client.InNamespace(bootstrap.TokenNamespace),
		client.MatchingLabels{bootstrap.LabelOperation: string(p.op.UID)}); err != nil {
		return fmt.Errorf("list bootstrap tokens: %w", err)
	}
	for i := range list.Items {
		if err := p.r.Client.Delete(ctx, &list.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete bootstrap token Secret %s: %w", list.Items[i].Name, err)
		}
	}
	return nil
}

// updateServer changes the Server's status and returns it as written (nil
// when the Server was replaced). The first try starts from base when given
// (a copy read or written a moment ago), the others from a fresh read. It
// leaves p.server as it is: steps read it while this runs in the
// background.
func (p *repave) updateServer(ctx context.Context, base *v1.Server, mutate func(s *v1.Server)) (*v1.Server, error) {
	key, uid := client.ObjectKeyFromObject(p.server), p.server.UID
	var written *v1.Server
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := &v1.Server{}
		if base != nil {
			base.DeepCopyInto(s)
			base = nil
		} else if err := p.r.APIReader.Get(ctx, key, s); err != nil {
			return err
		}
		if s.UID != uid {
			return nil
		}
		mutate(s)
		if err := p.r.Client.Status().Update(ctx, s); err != nil {
			return err
		}
		written = s
		return nil
	})
	return written, err
}

// waitServer waits for the Server's Provisioning status to be written.
func (p *repave) waitServer() {
	if p.serverDone != nil {
		<-p.serverDone
	}
}

func (p *repave) setServerProvisioning(ctx context.Context) error {
	var err error
	p.serverWritten, err = p.updateServer(ctx, p.server, func(s *v1.Server) {
		s.Status.Phase = v1.ServerProvisioning
		s.Status.LastOperation = p.opName
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stargate.ConditionProvisioned, Status: metav1.ConditionFalse,
			Reason: ReasonProvisioning, Message: "Operation " + p.opName + " is repaving the server", ObservedGeneration: s.Generation})
		serverstatus.SetReadySummary(s)
	})
	return err
}

// setServerResult writes the result into the Server's status, starting
// from the Server as the Provisioning write left it (a conflict, e.g. with
// the node health or routes controllers, reads it again).
func (p *repave) setServerResult(ctx context.Context, opCond metav1.Condition) error {
	p.waitServer()
	_, err := p.updateServer(ctx, p.serverWritten, func(s *v1.Server) {
		if s.Status.LastOperation != "" && s.Status.LastOperation != p.opName {
			return // a newer Operation owns the status now
		}
		s.Status.LastOperation = p.opName
		s.Status.ObservedGeneration = s.Generation
		if opCond.Status == metav1.ConditionTrue {
			s.Status.Phase = v1.ServerReady
			s.Status.NodeName = p.nodeName()
			meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stargate.ConditionProvisioned, Status: metav1.ConditionTrue,
				Reason: ReasonSucceeded, Message: "repaved by Operation " + p.opName, ObservedGeneration: s.Generation})
			meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stargate.ConditionNodeReady, Status: metav1.ConditionTrue,
				Reason: ReasonNodeReady, Message: "Node " + p.nodeName() + " is Ready", ObservedGeneration: s.Generation})
		} else {
			s.Status.Phase = v1.ServerFailed
			meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stargate.ConditionProvisioned, Status: metav1.ConditionFalse,
				Reason: opCond.Reason, Message: "Operation " + p.opName + ": " + opCond.Message, ObservedGeneration: s.Generation})
		}
		serverstatus.SetReadySummary(s)
	})
	return err
}
