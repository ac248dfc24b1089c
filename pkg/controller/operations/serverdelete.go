package operations

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/sshcreds"
)

// related is the Operation events of a step name beside the Server: none
// for the decommission of a deleted Server, whose Operation is not stored.
func (p *repave) related() runtime.Object {
	if p.serverDeleted {
		return nil
	}
	return p.op
}

// decommissionRetry is how often the decommission of a deleted Server is
// tried again until --decommission-timeout.
const decommissionRetry = 10 * time.Second

// decommissionMinAttempt is the least time worth another attempt.
const decommissionMinAttempt = 5 * time.Second

// decommissionLastAttempt bounds the attempt of a decommission that starts
// after --decommission-timeout has passed.
const decommissionLastAttempt = 30 * time.Second

// serverDecommissioner decommissions deleted Servers: it puts
// stargate.FinalizerDecommission on every Server that has a Node
// (status.nodeName) and, when such a Server is deleted, runs the steps of
// a Decommission (drain, reset the host, delete the Node) before it lets
// the Server go; the routes and pod CIDR finalizers then do the rest.
// After --decommission-timeout it deletes the Node anyway and says, in a
// Warning event, what was left on the host.
type serverDecommissioner struct{ r *Reconciler }

func (d *serverDecommissioner) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var s v1.Server
	if err := d.r.APIReader.Get(ctx, req.NamespacedName, &s); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	has := controllerutil.ContainsFinalizer(&s, stargate.FinalizerDecommission)
	if s.DeletionTimestamp == nil {
		if s.Status.NodeName == "" || has {
			return reconcile.Result{}, nil
		}
		patch := client.MergeFromWithOptions(s.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(&s, stargate.FinalizerDecommission)
		return reconcile.Result{}, client.IgnoreNotFound(d.r.Client.Patch(ctx, &s, patch))
	}
	if !has {
		return reconcile.Result{}, nil
	}
	log := logf.FromContext(ctx).WithValues("server", req.String())
	// The attempt ends with --decommission-timeout: a step that would
	// wait longer (a drain a PodDisruptionBudget blocks, a slow host)
	// does not hold the Server past it. One that starts later than that
	// (the controller was down) still gets decommissionLastAttempt.
	deadline := s.DeletionTimestamp.Add(d.r.Opts.DecommissionTimeout)
	if time.Until(deadline) < time.Second {
		deadline = time.Now().Add(decommissionLastAttempt)
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	msg, err := d.decommission(dctx, &s)
	cancel()
	if ctx.Err() != nil {
		return reconcile.Result{}, ctx.Err()
	}
	waited := time.Since(s.DeletionTimestamp.Time)
	// Out of time also when what is left after the pause before a retry
	// could not hold another attempt.
	timedOut := time.Until(deadline) < decommissionRetry+decommissionMinAttempt
	if err != nil && !timedOut {
		log.Info("decommission of the deleted Server failed; retrying until --decommission-timeout", "error", err.Error(), "waited", waited.Round(time.Second))
		d.r.Recorder.Eventf(&s, nil, corev1.EventTypeWarning, "DecommissionRetrying", "Decommission",
			"Decommission of deleted Server %s failed (retrying until --decommission-timeout %s): %v", s.Name, d.r.Opts.DecommissionTimeout, err)
		return reconcile.Result{RequeueAfter: decommissionRetry}, nil
	}
	if err != nil {
		// Give up on the host; the Node still goes.
		node, nerr := d.deleteOwnNode(ctx, &s)
		left := fmt.Sprintf("gave up within --decommission-timeout %s: %v; the host was not reset: its kubelet may still run with its configuration and client certificate (/etc/kubernetes, /var/lib/kubelet); reset it by hand or reinstall it", d.r.Opts.DecommissionTimeout, err)
		if nerr != nil {
			return reconcile.Result{}, nerr
		}
		left += "; " + node
		d.r.Recorder.Eventf(&s, nil, corev1.EventTypeWarning, stargate.ReasonHostNotReset, "Decommission", "Deleted Server %s: %s", s.Name, left)
		log.Info("deleted Server not decommissioned", "left", left)
	} else {
		d.r.Recorder.Eventf(&s, nil, corev1.EventTypeNormal, stargate.ReasonDecommissioned, "Decommission", "Deleted Server %s: %s", s.Name, msg)
		log.Info("decommissioned the deleted Server", "result", msg)
	}
	patch := client.MergeFromWithOptions(s.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(&s, stargate.FinalizerDecommission)
	return reconcile.Result{}, client.IgnoreNotFound(d.r.Client.Patch(ctx, &s, patch))
}

// decommission runs the steps of a Decommission for deleted Server s,
// with an Operation kept in memory only.
func (d *serverDecommissioner) decommission(ctx context.Context, s *v1.Server) (string, error) {
	profile, err := sshcreds.ProfileOf(ctx, d.r.APIReader, s)
	if err != nil {
		return "", err
	}
	if profile == "" {
		return "", errors.New("the Server names no provisioningProfileRef and its last Operation is gone: no SSH credentials to reach the host")
	}
	op := &v1.Operation{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: "deletion-of-" + s.Name, UID: s.UID},
		Spec: v1.OperationSpec{ServerRef: v1.LocalObjectReference{Name: s.Name}, ProvisioningProfileRef: v1.LocalObjectReference{Name: profile},
			Operation: v1.OperationDecommission, Reason: "the Server was deleted"},
	}
	p := &repave{opRun: newOpRun(d.r, op, logf.FromContext(ctx).WithValues("server", s.Namespace+"/"+s.Name, "decommission", "deleted Server"))}
	p.serverDeleted = true
	defer func() {
		if p.ssh != nil {
			_ = p.ssh.Close()
		}
	}()
	if err := p.resolve(ctx); err != nil {
		return "", err
	}
	// A drain gets what is left of the attempt (less a moment to end it
	// cleanly), so a PodDisruptionBudget that blocks it ends it with a
	// message naming the budget rather than a bare deadline.
	if dl, ok := ctx.Deadline(); ok {
		if left := (time.Until(dl) - 2*time.Second).Round(time.Second); left < p.drainTimeout() {
			p.op.Spec.DrainTimeout = &metav1.Duration{Duration: max(left, time.Second)}
		}
	}
	var done []string
	for _, st := range p.steps()[1:] {
		if err := p.step(ctx, st.name, st.fn); err != nil {
			return "", fmt.Errorf("%s: %w", st.name, err)
		}
		done = append(done, p.findStep(st.name).Message)
	}
	return strings.Join(done, "; "), nil
}

// deleteOwnNode deletes the Server's Node when it is the one Stargate made
// for it, and says what it did.
func (d *serverDecommissioner) deleteOwnNode(ctx context.Context, s *v1.Server) (string, error) {
	p := &repave{opRun: opRun{r: d.r}, server: s}
	node, err := p.ownNode(ctx)
	var f *failure
	if errors.As(err, &f) {
		return "its Node was left alone: " + f.Error(), nil
	}
	if err != nil {
		return "", err
	}
	if node == nil {
		return "it had no Node", nil
	}
	if err := d.r.Client.Delete(ctx, node, client.Preconditions{UID: &node.UID}); err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("delete Node %s: %w", node.Name, err)
	}
	return "its Node " + node.Name + " was deleted", nil
}
