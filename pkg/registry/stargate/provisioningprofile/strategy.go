// Package provisioningprofile is the registry of ProvisioningProfiles.
package provisioningprofile

import (
	"context"
	"fmt"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/validation"
	registry "github.com/stargate-k8s/stargate/pkg/registry/stargate"
)

// Strategy is how ProvisioningProfiles are created and updated.
type Strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// NewStrategy returns the strategy of ProvisioningProfiles.
func NewStrategy(typer runtime.ObjectTyper) Strategy {
	return Strategy{typer, names.SimpleNameGenerator}
}

func (Strategy) NamespaceScoped() bool { return true }

func (Strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	obj.(*stargate.ProvisioningProfile).Generation = 1
}

func (Strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	p, oldP := obj.(*stargate.ProvisioningProfile), old.(*stargate.ProvisioningProfile)
	if !apiequality.Semantic.DeepEqual(p.Spec, oldP.Spec) {
		p.Generation = oldP.Generation + 1
	}
}

func (Strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateProvisioningProfile(obj.(*stargate.ProvisioningProfile))
}

func (Strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string { return nil }

func (Strategy) AllowCreateOnUpdate(context.Context) bool { return false }

func (Strategy) AllowUnconditionalUpdate(context.Context) bool { return true }

func (Strategy) Canonicalize(obj runtime.Object) {}

func (Strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateProvisioningProfileUpdate(obj.(*stargate.ProvisioningProfile), old.(*stargate.ProvisioningProfile))
}

func (Strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string { return nil }

// GetAttrs returns the labels and fields of a ProvisioningProfile for selectors.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	p, ok := obj.(*stargate.ProvisioningProfile)
	if !ok {
		return nil, nil, fmt.Errorf("not a ProvisioningProfile: %T", obj)
	}
	return p.Labels, generic.ObjectMetaFieldsSet(&p.ObjectMeta, true), nil
}

// Match selects ProvisioningProfiles by label and field.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}

var tableConvertor = registry.TableConvertor[*stargate.ProvisioningProfile]{
	Columns: []metav1.TableColumnDefinition{
		{Name: "Kubernetes", Type: "string", Description: "Kubelet version installed on the nodes."},
		{Name: "Runtime", Type: "string", Description: "Container runtime."},
		{Name: "User", Type: "string", Description: "User Stargate logs in as over SSH."},
		{Name: "Script", Type: "string", Priority: 1, Description: "ConfigMap holding a custom bootstrap script."},
	},
	Cells: func(p *stargate.ProvisioningProfile) []interface{} {
		script := "<default>"
		if r := p.Spec.BootstrapScriptRef; r != nil {
			script = r.Name + "/" + r.Key
		}
		return []interface{}{p.Spec.KubernetesVersion, string(p.Spec.ContainerRuntime), p.Spec.AdminUsername, script}
	},
}
