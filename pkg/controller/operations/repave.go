package operations

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/bootstrap"
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
	// ReasonNotClaimed fails an Operation the Server's claim
	// (status.lastOperation, set by POST servers/NAME/repave) does not
	// name: one created directly, or a stale one the Server no longer
	// runs. It runs nothing on the host.
	ReasonNotClaimed = "NotClaimedByServer"
	// ReasonOperationDeleted is the Server's Provisioned reason when its
	// Operation was deleted while it ran; its script was stopped.
	ReasonOperationDeleted = "OperationDeleted"
	// ReasonScriptStopped is the event of an Operation whose runner
	// stopped another Operation's unfinished script on the host before
	// its own started.
	ReasonScriptStopped = "StoppedPreviousScript"
)

// Secret keys of the SSH credentials.
const (
	SecretKeyPrivateKey = corev1.SSHAuthPrivateKey
	SecretKeyKnownHosts = "known_hosts"
)

// repave is one run of a repave Operation within one reconcile: the step
// machinery of opRun, and what the repave's steps find and make.
type repave struct {
	opRun

	server  *v1.Server
	profile *v1.ProvisioningProfile
	signer  ssh.Signer
	known   []byte
	script  []byte
	ssh     *sshexec.Client
	// claimed says the Server's claim names this Operation: only then
	// does it write the Server's status.
	claimed bool
	// stoppedOthers are the Operations (UIDs) whose unfinished scripts
	// the runner stopped on the host before this one's started.
	stoppedOthers []string

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

	// scriptPhases times the script step from its start: the payload
	// built, the first line of output read, the result line read.
	scriptPhases []any
	scriptTime   time.Duration
	nodeWait     time.Duration
	// finishTime is the time finish took.
	finishTime time.Duration
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
	rp := &repave{opRun: newOpRun(r, op, log)}
	// The run ends early when its Operation is deleted (see
	// Reconciler.cancelDeleted); then it stops what it started.
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.running.Store(op.UID, cancel)
	defer r.running.Delete(op.UID)
	defer func() {
		if rp.ssh != nil {
			_ = rp.ssh.Close()
		}
		rp.waitServer()
	}()
	return ctrl.Result{}, rp.run(runCtx)
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
		if operationDeleted(ctx, err) {
			return p.abandon(ctx)
		}
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
			if operationDeleted(ctx, err) {
				return p.abandon(ctx)
			}
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
