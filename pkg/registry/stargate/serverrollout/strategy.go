// Package serverrollout is the registry of ServerRollouts: a namespaced
// one-shot that runs an Operation on many Servers of a datacenter under a
// limit. Only the status subresource writes status; what a rollout runs
// and on which Servers cannot change, how fast it goes can.
package serverrollout

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

// Strategy is how ServerRollouts are created, updated and deleted.
type Strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// NewStrategy returns the strategy of ServerRollouts.
func NewStrategy(typer runtime.ObjectTyper) Strategy {
	return Strategy{typer, names.SimpleNameGenerator}
}

func (Strategy) NamespaceScoped() bool { return true }

// GetResetFields says status is not the main resource's to set.
func (Strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"stargate.io/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

// PrepareForCreate drops any status sent: only the status subresource sets it.
func (Strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	r := obj.(*stargate.ServerRollout)
	r.Status = stargate.ServerRolloutStatus{}
	r.Generation = 1
}

// PrepareForUpdate keeps the status and bumps the generation when the
// spec changes.
func (Strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	r, oldR := obj.(*stargate.ServerRollout), old.(*stargate.ServerRollout)
	r.Status = oldR.Status
	r.Generation = oldR.Generation
	if !apiequality.Semantic.DeepEqual(r.Spec, oldR.Spec) {
		r.Generation++
	}
}

func (Strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateServerRollout(obj.(*stargate.ServerRollout))
}

func (Strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string { return nil }

func (Strategy) AllowCreateOnUpdate(context.Context) bool { return false }

func (Strategy) AllowUnconditionalUpdate(context.Context) bool { return true }

func (Strategy) Canonicalize(obj runtime.Object) {}

func (Strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateServerRolloutUpdate(obj.(*stargate.ServerRollout), old.(*stargate.ServerRollout))
}

func (Strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string { return nil }

// StatusStrategy is how serverrollouts/status is updated: the spec stays as it was.
type StatusStrategy struct {
	Strategy
}

// NewStatusStrategy returns the strategy of serverrollouts/status.
func NewStatusStrategy(s Strategy) StatusStrategy { return StatusStrategy{s} }

// GetResetFields says spec is not the status subresource's to set.
func (StatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"stargate.io/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("spec")),
	}
}

func (StatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	r, oldR := obj.(*stargate.ServerRollout), old.(*stargate.ServerRollout)
	r.Spec = oldR.Spec
	r.Generation = oldR.Generation
}

func (StatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateServerRolloutStatusUpdate(obj.(*stargate.ServerRollout), old.(*stargate.ServerRollout))
}

func (StatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// GetAttrs returns the labels and fields of a ServerRollout for selectors.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	r, ok := obj.(*stargate.ServerRollout)
	if !ok {
		return nil, nil, fmt.Errorf("not a ServerRollout: %T", obj)
	}
	return r.Labels, generic.ObjectMetaFieldsSet(&r.ObjectMeta, true), nil
}

// Match selects ServerRollouts by label and field.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}

// State is the one word kubectl shows for where a rollout is: Complete or
// Failed once finished, Paused, Progressing, or Pending before the
// controller first saw it.
func State(r *stargate.ServerRollout) string {
	for _, t := range []string{stargate.ConditionRolloutComplete, stargate.ConditionRolloutFailed} {
		if meta.IsStatusConditionTrue(r.Status.Conditions, t) {
			return t
		}
	}
	if r.Spec.Paused {
		return "Paused"
	}
	if meta.IsStatusConditionTrue(r.Status.Conditions, stargate.ConditionRolloutProgressing) {
		return stargate.ConditionRolloutProgressing
	}
	return "Pending"
}

var tableConvertor = registry.TableConvertor[*stargate.ServerRollout]{
	Columns: []metav1.TableColumnDefinition{
		{Name: "Operation", Type: "string", Description: "The Operation run on each Server."},
		{Name: "Progress", Type: "string", Description: "Servers whose Operation succeeded, of the selected Servers."},
		{Name: "Running", Type: "integer", Description: "Servers whose Operation is running."},
		{Name: "Failed", Type: "integer", Description: "Servers whose Operation failed."},
		{Name: "Max-Unavailable", Type: "string", Description: "How many selected Servers may be unavailable at once."},
		{Name: "State", Type: "string", Description: "Pending, Progressing, Paused, Complete or Failed."},
		{Name: "Unavailable", Type: "integer", Priority: 1, Description: "Selected Servers unavailable when last checked."},
		{Name: "Profile", Type: "string", Priority: 1, Description: "ProvisioningProfile each repave uses; the Server's own when <none>."},
	},
	Cells: func(r *stargate.ServerRollout) []interface{} {
		maxUnavailable := "<none>"
		if r.Spec.MaxUnavailable != nil {
			maxUnavailable = r.Spec.MaxUnavailable.String()
		}
		profile := ""
		if r.Spec.ProvisioningProfileRef != nil {
			profile = r.Spec.ProvisioningProfileRef.Name
		}
		return []interface{}{string(r.Spec.Operation), fmt.Sprintf("%d/%d", r.Status.Succeeded, r.Status.Total),
			int64(r.Status.Running), int64(r.Status.Failed), maxUnavailable, State(r),
			int64(r.Status.Unavailable), registry.OrNone(profile)}
	},
}
