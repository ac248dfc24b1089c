// Package nodehealth keeps a provisioned Server's phase and NodeReady
// condition true to its Node after the repave: a Node that goes NotReady
// or disappears makes the Server Failed with a condition that says so, and
// a Node that comes back Ready makes it Ready again.
package nodehealth

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// Controller is the nodehealth reconciler group.
type Controller struct{}

// New returns the controller.
func New() *Controller { return &Controller{} }

// Name implements manager.Controller.
func (c *Controller) Name() string { return "nodehealth" }

// AddFlags implements manager.Controller; nodehealth has no flags.
func (c *Controller) AddFlags(*pflag.FlagSet) {}

// SetupWithManager implements manager.Controller.
func (c *Controller) SetupWithManager(_ context.Context, mgr ctrl.Manager) error {
	r := &Reconciler{Client: mgr.GetClient()}
	return ctrl.NewControllerManagedBy(mgr).
		Named("nodehealth").
		For(&v1.Server{}).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(serverOfNode)).
		Complete(r)
}

// serverOfNode maps a Stargate Node to its Server through its labels.
func serverOfNode(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[stargate.LabelServer] == "" || l[stargate.LabelDatacenter] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: l[stargate.LabelDatacenter], Name: l[stargate.LabelServer]}}}
}

// Reconciler reconciles one Server's node health.
type Reconciler struct {
	Client client.Client
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var s v1.Server
	if err := r.Client.Get(ctx, req.NamespacedName, &s); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// Only provisioned servers have a node to watch; a running repave
	// owns the status until it ends.
	if s.Status.NodeName == "" || s.Status.Phase == v1.ServerProvisioning || s.Status.Phase == v1.ServerPending {
		return ctrl.Result{}, nil
	}
	if c := meta.FindStatusCondition(s.Status.Conditions, stargate.ConditionProvisioned); c == nil || c.Status != metav1.ConditionTrue {
		return ctrl.Result{}, nil
	}
	want := s.DeepCopy()
	Apply(want, r.node(ctx, s.Status.NodeName))
	if equality.Semantic.DeepEqual(want.Status, s.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Client.Status().Update(ctx, want); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, fmt.Errorf("update status of Server %s: %w", s.Name, err)
	}
	return ctrl.Result{}, nil
}

func (r *Reconciler) node(ctx context.Context, name string) *corev1.Node {
	var n corev1.Node
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, &n); err != nil {
		return nil
	}
	return &n
}

// Apply sets the Server's NodeReady condition, phase and Ready summary
// from its Node (nil: the Node does not exist).
func Apply(s *v1.Server, n *corev1.Node) {
	cond := metav1.Condition{Type: stargate.ConditionNodeReady, ObservedGeneration: s.Generation}
	switch {
	case n == nil:
		cond.Status, cond.Reason = metav1.ConditionFalse, stargate.ReasonNodeNotFound
		cond.Message = fmt.Sprintf("Node %s does not exist any more; repave the server to join it again", s.Status.NodeName)
	default:
		var ready *corev1.NodeCondition
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == corev1.NodeReady {
				ready = &n.Status.Conditions[i]
			}
		}
		if ready != nil && ready.Status == corev1.ConditionTrue {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, stargate.ReasonNodeReady, "Node "+n.Name+" is Ready"
		} else {
			cond.Status, cond.Reason = metav1.ConditionFalse, stargate.ReasonNodeNotReady
			cond.Message = "Node " + n.Name + " is not Ready"
			if ready != nil && ready.Message != "" {
				cond.Message += ": " + ready.Message
			}
		}
	}
	meta.SetStatusCondition(&s.Status.Conditions, cond)
	if cond.Status == metav1.ConditionTrue {
		s.Status.Phase = v1.ServerReady
	} else {
		s.Status.Phase = v1.ServerFailed
	}
	v1.SetReadySummary(s)
}
