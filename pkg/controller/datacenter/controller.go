package datacenter

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// Controller is the membership reconciler: it writes every Server's
// InDatacenter condition, and Ready with it.
type Controller struct{}

// New returns the controller.
func New() *Controller { return &Controller{} }

// Name implements manager.Controller.
func (c *Controller) Name() string { return "datacenter" }

// AddFlags implements manager.Controller; it has no flags.
func (c *Controller) AddFlags(*pflag.FlagSet) {}

// SetupWithManager implements manager.Controller.
func (c *Controller) SetupWithManager(_ context.Context, mgr ctrl.Manager) error {
	r := &Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("stargate-datacenter")} //nolint:staticcheck // the events/v1 recorder is not wired in the manager yet
	return ctrl.NewControllerManagedBy(mgr).
		Named("datacenter").
		// Only a Server's spec decides whether it fits: its status writes
		// need no check.
		For(&v1.Server{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1.Datacenter{}, handler.EnqueueRequestsFromMapFunc(ServersOf(mgr.GetClient(), nil))).
		Complete(r)
}

// Reconciler reconciles one Server's InDatacenter condition.
type Reconciler struct {
	Client   client.Client
	Recorder record.EventRecorder
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var s v1.Server
	if err := r.Client.Get(ctx, req.NamespacedName, &s); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !s.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	_, cond, err := Resolve(ctx, r.Client, &s)
	if err != nil {
		return ctrl.Result{}, err
	}
	next := s.DeepCopy()
	if !Apply(next, cond) {
		return ctrl.Result{}, nil
	}
	if err := r.Client.Status().Update(ctx, next); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			// A newer Server is or will be in the cache, and its event
			// (or none, when it is gone) brings it back.
			return ctrl.Result{Requeue: apierrors.IsConflict(err)}, nil
		}
		return ctrl.Result{}, fmt.Errorf("update status of Server %s: %w", req, err)
	}
	if r.Recorder != nil {
		typ := corev1.EventTypeNormal
		if cond.Status != metav1.ConditionTrue {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Event(next, typ, cond.Reason, cond.Message)
	}
	return ctrl.Result{}, nil
}

// Apply sets the InDatacenter condition and the Ready summary on s and
// says whether the status changed.
func Apply(s *v1.Server, cond metav1.Condition) bool {
	before := s.Status.DeepCopy()
	meta.SetStatusCondition(&s.Status.Conditions, cond)
	v1.SetReadySummary(s)
	return !equality.Semantic.DeepEqual(before, &s.Status)
}
