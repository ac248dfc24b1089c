package operations

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/bootstrap"
	"github.com/stargate-k8s/stargate/pkg/controller/sshcreds"
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

// RepaveSteps lists the steps of a repave in the order they run: the
// Node is drained once the host is known to be reachable, before anything
// changes on it.
var RepaveSteps = []string{StepResolve, StepConnect, StepDrain, StepToken, StepStaleNode, StepScript, StepWaitForNode}

// repave is one run of a repave Operation within one reconcile: the step
// machinery of opRun, and what the repave's steps find and make.
type repave struct {
	opRun

	server  *v1.Server
	profile *v1.ProvisioningProfile
	creds   *sshcreds.Credentials
	// tailscale is the tailnet join of the profile's auth key, if any.
	tailscale *bootstrap.TailscaleJoin
	script    []byte
	ssh       *sshexec.Client
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

// kind is the Operation's type; Repave when empty.
func (p *repave) kind() v1.OperationType {
	if p.op.Spec.Operation == "" {
		return v1.OperationRepave
	}
	return p.op.Spec.Operation
}

// stepFunc is one step of an Operation type.
type stepFunc struct {
	name string
	fn   func(context.Context) (string, error)
}

// steps are the steps of the Operation's type, in order; nil for a type
// this controller does not run.
func (p *repave) steps() []stepFunc {
	resolved := stepFunc{StepResolve, func(context.Context) (string, error) {
		return fmt.Sprintf("server %s, profile %s, credentials %s", p.server.Name, p.profile.Name, p.profile.Spec.SSHCredentialsSecretRef.Name), nil
	}}
	switch p.kind() {
	case v1.OperationRepave:
		return []stepFunc{
			resolved,
			{StepConnect, p.connect},
			{StepDrain, p.drainNode},
			{StepToken, p.createToken},
			{StepStaleNode, p.removeStaleNode},
			{StepScript, p.runScript},
			{StepWaitForNode, p.waitForNode},
		}
	case v1.OperationReboot:
		return []stepFunc{
			resolved,
			{StepConnect, p.connect},
			{StepDrain, p.drainNode},
			{StepReboot, p.rebootHost},
			{StepWaitForNode, p.waitForReboot},
			{StepUncordon, p.uncordon},
		}
	case v1.OperationDecommission:
		return []stepFunc{
			resolved,
			{StepDrain, p.drainNode},
			{StepReset, p.resetHost},
			{StepDeleteNode, p.deleteNode},
		}
	}
	return nil
}

func (p *repave) run(ctx context.Context) error {
	start := time.Now()
	kind := p.kind()
	steps := p.steps()
	if steps == nil {
		return p.finish(ctx, "", fail(stargate.ReasonUnsupported, "operation %q is not supported; only %s, %s and %s are", p.op.Spec.Operation, v1.OperationRepave, v1.OperationReboot, v1.OperationDecommission))
	}
	first := p.op.Status.Phase == "" || p.op.Status.Phase == v1.OperationPending
	if first {
		now := metav1.Now()
		p.op.Status.Phase = v1.OperationRunning
		p.op.Status.StartTime = &now
		p.op.Status.Steps = nil
		for _, s := range steps {
			p.op.Status.Steps = append(p.op.Status.Steps, v1.OperationStep{Name: s.name, State: v1.StepPending})
		}
		p.op.Status.Message = strings.ToLower(string(kind)) + " started"
		p.log.Info(p.op.Status.Message)
	} else {
		p.log.Info("resuming "+strings.ToLower(string(kind)), "steps", stepSummary(p.op))
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
		p.r.Recorder.Eventf(p.server, p.op, corev1.EventTypeNormal, string(kind)+"Started", string(kind), "Operation %s started a %s", p.op.Name, strings.ToLower(string(kind)))
		// The Server's status is no step: it is written while the first
		// steps run, and finished before the result is written. A reboot
		// leaves the Server's provisioning as it is.
		if kind == v1.OperationRepave {
			p.serverDone = make(chan struct{})
			go func() {
				defer close(p.serverDone)
				if err := p.setServerProvisioning(ctx); err != nil {
					p.log.Error(err, "set Server status Provisioning")
				}
			}()
		}
	}
	for _, s := range steps {
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
	p.log.Info(strings.ToLower(string(kind))+" finished", "wall", wall, "script", p.scriptTime, "nodeWait", p.nodeWait,
		"overhead", wall-p.scriptTime-p.nodeWait, "steps", p.stepTimes, "scriptStep", p.scriptPhases,
		"statusWrites", p.statusWrites, "statusWriteTime", p.statusWriteTime, "finish", p.finishTime)
	return err
}

// isRetriable says whether an error of the API server should be retried by
