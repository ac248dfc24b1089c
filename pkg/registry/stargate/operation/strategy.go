// Package operation is the registry of Operations: their spec is fixed at
// creation, and only the status subresource moves them along.
package operation

import (
	"context"
	"fmt"

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

// Strategy is how Operations are created, updated and deleted.
type Strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// NewStrategy returns the strategy of Operations.
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

// PrepareForCreate starts every Operation Pending, whatever status was sent.
func (Strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	o := obj.(*stargate.Operation)
	o.Status = stargate.OperationStatus{Phase: stargate.OperationPending}
	o.Generation = 1
}

// PrepareForUpdate keeps the status: it moves only through operations/status.
func (Strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	o, oldO := obj.(*stargate.Operation), old.(*stargate.Operation)
	o.Status = oldO.Status
	o.Generation = oldO.Generation
}

func (Strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateOperation(obj.(*stargate.Operation))
}

func (Strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string { return nil }

func (Strategy) AllowCreateOnUpdate(context.Context) bool { return false }

func (Strategy) AllowUnconditionalUpdate(context.Context) bool { return true }

func (Strategy) Canonicalize(obj runtime.Object) {}

func (Strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateOperationUpdate(obj.(*stargate.Operation), old.(*stargate.Operation))
}

func (Strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string { return nil }

// StatusStrategy is how operations/status is updated: the spec stays as it was.
type StatusStrategy struct {
	Strategy
}

// NewStatusStrategy returns the strategy of operations/status.
func NewStatusStrategy(s Strategy) StatusStrategy { return StatusStrategy{s} }

// GetResetFields says spec is not the status subresource's to set.
func (StatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"stargate.io/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("spec")),
	}
}

func (StatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	o, oldO := obj.(*stargate.Operation), old.(*stargate.Operation)
	o.Spec = oldO.Spec
	o.Generation = oldO.Generation
}

func (StatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateOperationStatusUpdate(obj.(*stargate.Operation), old.(*stargate.Operation))
}

func (StatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// SelectableFields are the fields Operations can be selected by, besides metadata.
func SelectableFields(o *stargate.Operation) fields.Set {
	return generic.AddObjectMetaFieldsSet(fields.Set{
		"spec.serverRef.name": o.Spec.ServerRef.Name,
		"spec.operation":      string(o.Spec.Operation),
		"status.phase":        string(o.Status.Phase),
	}, &o.ObjectMeta, true)
}

// GetAttrs returns the labels and fields of an Operation for selectors.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	o, ok := obj.(*stargate.Operation)
	if !ok {
		return nil, nil, fmt.Errorf("not an Operation: %T", obj)
	}
	return o.Labels, SelectableFields(o), nil
}

// Match selects Operations by label and field.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}

var tableConvertor = registry.TableConvertor[*stargate.Operation]{
	Columns: []metav1.TableColumnDefinition{
		{Name: "Server", Type: "string", Description: "Server the operation works on."},
		{Name: "Operation", Type: "string", Description: "What the operation does."},
		{Name: "Phase", Type: "string", Description: "Pending, Running, Succeeded or Failed."},
		{Name: "Step", Type: "string", Description: "The step running now, or the last one."},
		{Name: "Profile", Type: "string", Priority: 1, Description: "ProvisioningProfile used."},
		{Name: "Message", Type: "string", Priority: 1, Description: "Outcome, for a person."},
	},
	Cells: func(o *stargate.Operation) []interface{} {
		return []interface{}{o.Spec.ServerRef.Name, string(o.Spec.Operation), string(o.Status.Phase),
			registry.OrNone(currentStep(o)), o.Spec.ProvisioningProfileRef.Name, o.Status.Message}
	},
}

// currentStep is the step running now, else the last one that started.
func currentStep(o *stargate.Operation) string {
	last := ""
	for _, s := range o.Status.Steps {
		if s.State == stargate.StepRunning {
			return s.Name
		}
		if s.State != stargate.StepPending {
			last = s.Name
		}
	}
	return last
}
