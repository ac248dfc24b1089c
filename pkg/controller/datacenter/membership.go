// Package datacenter decides, in one place, whether stargate-controller
// acts on a Server: only when a Datacenter an admin declared names the
// Server's namespace and the Server fits that datacenter's network. Its
// reconciler reports the answer as the Server's InDatacenter condition;
// the repave, ipam and routes reconcilers ask the same Resolve before they
// act, so none of them can act on a Server the condition refuses.
package datacenter

import (
	"context"
	"fmt"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/validation"
)

// Find returns the Datacenter whose spec.namespace is ns, or nil. Admission
// allows one per namespace; should two exist (a race), the oldest counts.
// Datacenters are few, so they are listed whole: r may be a cache without
// an index or a reader around the cache.
func Find(ctx context.Context, r ctrl.Reader, ns string) (*v1.Datacenter, error) {
	idx, err := NewIndex(ctx, r)
	if err != nil {
		return nil, err
	}
	return idx[ns], nil
}

func pick(dcs []v1.Datacenter, ns string) *v1.Datacenter {
	var found []*v1.Datacenter
	for i := range dcs {
		if dcs[i].Spec.Namespace == ns && dcs[i].DeletionTimestamp.IsZero() {
			found = append(found, &dcs[i])
		}
	}
	if len(found) == 0 {
		return nil
	}
	sort.Slice(found, func(i, j int) bool {
		a, b := found[i], found[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
	return found[0]
}

// Check returns the Server's InDatacenter condition given the Datacenter
// of its namespace (nil: none): True only when dc exists and the Server's
// spec fits its network (validation.ValidateServerInDatacenter, the rule
// admission applies to new Servers).
func Check(s *v1.Server, dc *v1.Datacenter) metav1.Condition {
	cond := metav1.Condition{Type: stargate.ConditionInDatacenter, ObservedGeneration: s.Generation}
	if dc == nil {
		cond.Status, cond.Reason = metav1.ConditionFalse, stargate.ReasonNoDatacenter
		cond.Message = fmt.Sprintf("namespace %s is not a datacenter: no Datacenter names it, so Stargate does not repave, allocate a pod CIDR to or route its Servers; "+
			"an admin declares it with a Datacenter whose spec.namespace is %s (ClusterRole stargate-datacenter-admin)", s.Namespace, s.Namespace)
		return cond
	}
	var spec stargate.ServerSpec
	var dcSpec stargate.DatacenterSpec
	errA := v1.Convert_v1alpha1_ServerSpec_To_stargate_ServerSpec(&s.Spec, &spec, nil)
	errB := v1.Convert_v1alpha1_DatacenterSpec_To_stargate_DatacenterSpec(&dc.Spec, &dcSpec, nil)
	if errA != nil || errB != nil {
		cond.Status, cond.Reason = metav1.ConditionFalse, stargate.ReasonNotInDatacenterNetwork
		cond.Message = fmt.Sprintf("cannot check the Server against Datacenter %s: %v", dc.Name, firstErr(errA, errB))
		return cond
	}
	if errs := validation.ValidateServerInDatacenter(&spec, nil, dc.Name, &dcSpec); len(errs) > 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, stargate.ReasonNotInDatacenterNetwork
		cond.Message = fmt.Sprintf("the Server does not fit the network of Datacenter %s, so Stargate does not repave, allocate a pod CIDR to or route it: %s; "+
			"correct the Server (or recreate it), or have an admin correct the Datacenter", dc.Name, errs.ToAggregate().Error())
		return cond
	}
	cond.Status, cond.Reason = metav1.ConditionTrue, stargate.ReasonInDatacenterNetwork
	cond.Message = fmt.Sprintf("in Datacenter %s (worker subnet %s, router %s)", dc.Name, dc.Spec.WorkerSubnet, dc.Spec.Router.IP)
	return cond
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Resolve finds the Server's Datacenter through r and checks the Server
// against it. The Datacenter is returned only when the condition is True.
func Resolve(ctx context.Context, r ctrl.Reader, s *v1.Server) (*v1.Datacenter, metav1.Condition, error) {
	idx, err := NewIndex(ctx, r)
	if err != nil {
		return nil, metav1.Condition{}, err
	}
	dc, cond := idx.Check(s)
	return dc, cond, nil
}

// Index checks many Servers against the Datacenters listed once, for
// reconcilers that handle every Server in one pass.
type Index map[string]*v1.Datacenter

// NewIndex lists the Datacenters through r.
func NewIndex(ctx context.Context, r ctrl.Reader) (Index, error) {
	var list v1.DatacenterList
	if err := r.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list Datacenters: %w", err)
	}
	idx := Index{}
	for i := range list.Items {
		ns := list.Items[i].Spec.Namespace
		if _, ok := idx[ns]; !ok {
			idx[ns] = pick(list.Items, ns)
		}
	}
	return idx, nil
}

// Check is Check with the Server's Datacenter from the index; the
// Datacenter is returned only when the condition is True.
func (idx Index) Check(s *v1.Server) (*v1.Datacenter, metav1.Condition) {
	dc := idx[s.Namespace]
	cond := Check(s, dc)
	if cond.Status != metav1.ConditionTrue {
		return nil, cond
	}
	return dc, cond
}

// ServersOf maps a Datacenter event to the Servers of its namespace that
// keep (when keep is nil, every one), listed through r: a Datacenter that
// appears, changes or goes changes what is allowed for all of them.
func ServersOf(r ctrl.Reader, keep func(*v1.Server) bool) handler.MapFunc {
	return func(ctx context.Context, o ctrl.Object) []reconcile.Request {
		dc, ok := o.(*v1.Datacenter)
		if !ok || dc.Spec.Namespace == "" {
			return nil
		}
		var l v1.ServerList
		if err := r.List(ctx, &l, ctrl.InNamespace(dc.Spec.Namespace)); err != nil {
			return nil
		}
		var out []reconcile.Request
		for i := range l.Items {
			if keep == nil || keep(&l.Items[i]) {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: l.Items[i].Namespace, Name: l.Items[i].Name}})
			}
		}
		return out
	}
}
