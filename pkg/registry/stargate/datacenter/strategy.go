// Package datacenter is the registry of Datacenters: cluster-scoped, each
// naming the namespace of a datacenter and declaring its network. Only the
// status subresource writes status. That a namespace has one Datacenter
// only, and that Servers stay inside their datacenter's network, is
// checked by the DatacenterNetwork admission plugin, which sees the other
// objects.
package datacenter

import (
	"context"
	"fmt"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/validation"
	registry "github.com/stargate-k8s/stargate/pkg/registry/stargate"
)

// Strategy is how Datacenters are created, updated and deleted.
type Strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// NewStrategy returns the strategy of Datacenters.
func NewStrategy(typer runtime.ObjectTyper) Strategy {
	return Strategy{typer, names.SimpleNameGenerator}
}

func (Strategy) NamespaceScoped() bool { return false }

// GetResetFields says status is not the main resource's to set.
func (Strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"stargate.io/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

// PrepareForCreate drops any status sent: only the status subresource sets it.
func (Strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	d := obj.(*stargate.Datacenter)
	d.Status = stargate.DatacenterStatus{}
	d.Generation = 1
}

// PrepareForUpdate keeps the status and bumps the generation when the
// spec changes.
func (Strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	d, oldD := obj.(*stargate.Datacenter), old.(*stargate.Datacenter)
	d.Status = oldD.Status
	d.Generation = oldD.Generation
	if !apiequality.Semantic.DeepEqual(d.Spec, oldD.Spec) {
		d.Generation++
	}
}

func (Strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateDatacenter(obj.(*stargate.Datacenter))
}

func (Strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string { return nil }

func (Strategy) AllowCreateOnUpdate(context.Context) bool { return false }

func (Strategy) AllowUnconditionalUpdate(context.Context) bool { return true }

func (Strategy) Canonicalize(obj runtime.Object) {}

func (Strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateDatacenterUpdate(obj.(*stargate.Datacenter), old.(*stargate.Datacenter))
}

// WarningsOnUpdate says that a changed network is not checked against the
// Servers that already exist.
func (Strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	d, oldD := obj.(*stargate.Datacenter), old.(*stargate.Datacenter)
	if d.Spec.WorkerSubnet != oldD.Spec.WorkerSubnet || d.Spec.Router != oldD.Spec.Router || d.Spec.PodCIDRBlock != oldD.Spec.PodCIDRBlock {
		return []string{fmt.Sprintf("the network of datacenter %s changed: Servers already in namespace %s are not re-checked against it until their spec changes",
			d.Name, d.Spec.Namespace)}
	}
	return nil
}

// StatusStrategy is how datacenters/status is updated: the spec stays as it was.
type StatusStrategy struct {
	Strategy
}

// NewStatusStrategy returns the strategy of datacenters/status.
func NewStatusStrategy(s Strategy) StatusStrategy { return StatusStrategy{s} }

// GetResetFields says spec is not the status subresource's to set.
func (StatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"stargate.io/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("spec")),
	}
}

func (StatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	d, oldD := obj.(*stargate.Datacenter), old.(*stargate.Datacenter)
	d.Spec = oldD.Spec
	d.Generation = oldD.Generation
}

func (StatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateDatacenterStatusUpdate(obj.(*stargate.Datacenter), old.(*stargate.Datacenter))
}

func (StatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// SelectableFields are the fields Datacenters can be selected by, besides
// metadata: spec.namespace finds the Datacenter of a namespace.
func SelectableFields(d *stargate.Datacenter) fields.Set {
	return generic.AddObjectMetaFieldsSet(fields.Set{
		"spec.namespace": d.Spec.Namespace,
	}, &d.ObjectMeta, false)
}

// GetAttrs returns the labels and fields of a Datacenter for selectors.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	d, ok := obj.(*stargate.Datacenter)
	if !ok {
		return nil, nil, fmt.Errorf("not a Datacenter: %T", obj)
	}
	return d.Labels, SelectableFields(d), nil
}

// Match selects Datacenters by label and field.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}

var tableConvertor = registry.TableConvertor[*stargate.Datacenter]{
	Columns: []metav1.TableColumnDefinition{
		{Name: "Namespace", Type: "string", Description: "Namespace of the datacenter's Servers."},
		{Name: "Worker-Subnet", Type: "string", Description: "CIDR of the servers' own addresses."},
		{Name: "Router", Type: "string", Description: "Tailnet address of the datacenter router, the Servers' spec.routerIP."},
		{Name: "Agent-Gateway", Type: "string", Priority: 1, Description: "The router's address in the worker subnet, the next hop the node agent checks."},
		{Name: "Pod-CIDR-Block", Type: "string", Priority: 1, Description: "CIDR the pinned pod CIDRs of the Servers must lie in."},
		{Name: "Ready", Type: "string", Priority: 1, Description: "Status of the Ready condition."},
	},
	Cells: func(d *stargate.Datacenter) []interface{} {
		ready := "Unknown"
		if c := meta.FindStatusCondition(d.Status.Conditions, stargate.ConditionReady); c != nil {
			ready = string(c.Status)
		}
		return []interface{}{d.Spec.Namespace, d.Spec.WorkerSubnet, d.Spec.Router.IP,
			d.Spec.AgentGateway, registry.OrNone(d.Spec.PodCIDRBlock), ready}
	},
}
