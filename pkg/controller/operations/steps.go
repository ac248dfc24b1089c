package operations

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/go-logr/logr"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// opRun is the step machinery of one run of an Operation within one
// reconcile, shared by every Operation type: it records each step as
// Running before it starts and Succeeded (or Failed) when it ends, in the
// Operation's status, so a restarted controller resumes where the last run
// stopped and never runs a finished step again. The steps themselves and
// what the Operation does with the Server live with each Operation type
// (repave.go, repave_steps.go, status.go).
type opRun struct {
	r  *Reconciler
	op *v1.Operation
	// opName is op.Name for what runs beside the steps: op itself is
	// rewritten by every status write.
	opName string
	log    logr.Logger
	redact *redactor

	// resumedSteps are steps an earlier run recorded as Running and did
	// not finish.
	resumedSteps map[string]bool
	// startedHere are steps this run recorded as Running itself.
	startedHere map[string]bool

	// serverDeleted says the run is the decommission of a deleted Server
	// (serverdelete.go): its Operation exists only in memory, so nothing
	// writes its status and the Server's claim is not asked for.
	serverDeleted bool

	stepTimes []any
	// statusWrites and statusWriteTime count the Operation's status
	// writes.
	statusWrites    int
	statusWriteTime time.Duration
}

func newOpRun(r *Reconciler, op *v1.Operation, log logr.Logger) opRun {
	return opRun{r: r, op: op, opName: op.Name, log: log, redact: newRedactor(), resumedSteps: map[string]bool{}, startedHere: map[string]bool{}}
}

// errOperationDeleted ends a run whose Operation was deleted: the cause of
// its context (Reconciler.cancelDeleted), or what a status write found.
var errOperationDeleted = errors.New("the Operation was deleted")

// operationDeleted says whether the run ended because its Operation is
// gone.
func operationDeleted(ctx context.Context, err error) bool {
	return errors.Is(context.Cause(ctx), errOperationDeleted) || errors.Is(err, errOperationDeleted)
}

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
func (p *opRun) stepState(name string) v1.StepState {
	for _, s := range p.op.Status.Steps {
		if s.Name == name {
			return s.State
		}
	}
	return v1.StepPending
}

func (p *opRun) findStep(name string) *v1.OperationStep {
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
func (p *opRun) step(ctx context.Context, name string, fn func(context.Context) (string, error)) error {
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

func (p *opRun) updateStatus(ctx context.Context) error {
	if p.serverDeleted {
		return nil
	}
	p.op.Status.Message = p.redact.String(p.op.Status.Message)
	began := time.Now()
	err := p.r.Client.Status().Update(ctx, p.op)
	p.statusWrites++
	p.statusWriteTime += time.Since(began)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("update status of Operation %s: %w (%v)", p.op.Name, errOperationDeleted, err)
	}
	if err != nil {
		return fmt.Errorf("update status of Operation %s: %w", p.op.Name, err)
	}
	return nil
}

// getAll reads objects around the cache at the same time: each read is a
// round trip through the aggregator, and these do not depend on each other.
func (p *opRun) getAll(gets ...func() error) []error {
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

// minResumeTime is the least a resumed step gets past its deadline, to
// read a result that is already there.
const minResumeTime = 10 * time.Second

// stepDeadline is when step name must end: timeout after its recorded
// start, so a step resumed after a restart gets what is left, not a new
// timeout (but at least minResumeTime).
func (p *opRun) stepDeadline(name string, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if s := p.findStep(name); s.StartTime != nil && p.resumedSteps[name] {
		d = s.StartTime.Add(timeout)
		if least := time.Now().Add(minResumeTime); d.Before(least) {
			d = least
		}
	}
	return d
}
