// Package server is the registry of Servers and of their subresources:
// status, repave (POST, starts an Operation) and routes (GET, route health).
package server

import (
	"context"
	"fmt"
	"strings"

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

// Strategy is how Servers are created, updated and deleted.
type Strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// NewStrategy returns the strategy of Servers.
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

// PrepareForCreate starts every Server Pending, whatever status was sent.
func (Strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	s := obj.(*stargate.Server)
	s.Status = stargate.ServerStatus{Phase: stargate.ServerPending}
	s.Generation = 1
}

// PrepareForUpdate keeps the status (it moves only through servers/status)
// and bumps the generation when the spec changes.
func (Strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	s, oldS := obj.(*stargate.Server), old.(*stargate.Server)
	s.Status = oldS.Status
	s.Generation = oldS.Generation
	if !apiequality.Semantic.DeepEqual(s.Spec, oldS.Spec) {
		s.Generation++
	}
}

func (Strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateServer(obj.(*stargate.Server))
}

func (Strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string {
	return warnings(obj.(*stargate.Server))
}

func (Strategy) AllowCreateOnUpdate(context.Context) bool { return false }

func (Strategy) AllowUnconditionalUpdate(context.Context) bool { return true }

func (Strategy) Canonicalize(obj runtime.Object) {
	s := obj.(*stargate.Server)
	s.Spec.MACAddress = strings.ToLower(s.Spec.MACAddress)
}

func (Strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateServerUpdate(obj.(*stargate.Server), old.(*stargate.Server))
}

func (Strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return warnings(obj.(*stargate.Server))
}

func warnings(s *stargate.Server) []string {
	if s.Spec.HostKey == "" {
		return []string{"spec.hostKey is empty: the host key will be checked against the known_hosts entry of the profile's SSH credentials Secret, and the repave fails if there is none"}
	}
	return nil
}

// StatusStrategy is how servers/status is updated: the spec stays as it was.
type StatusStrategy struct {
	Strategy
}

// NewStatusStrategy returns the strategy of servers/status.
func NewStatusStrategy(s Strategy) StatusStrategy { return StatusStrategy{s} }

// GetResetFields says spec is not the status subresource's to set.
func (StatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"stargate.io/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("spec")),
	}
}

func (StatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	s, oldS := obj.(*stargate.Server), old.(*stargate.Server)
	s.Spec = oldS.Spec
	s.Generation = oldS.Generation
}

func (StatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateServerStatusUpdate(obj.(*stargate.Server), old.(*stargate.Server))
}

func (StatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// SelectableFields are the fields Servers can be selected by, besides metadata.
func SelectableFields(s *stargate.Server) fields.Set {
	return generic.AddObjectMetaFieldsSet(fields.Set{
		"spec.hostname":   s.Spec.Hostname,
		"spec.ipAddress":  s.Spec.IPAddress,
		"spec.routerIP":   s.Spec.RouterIP,
		"status.phase":    string(s.Status.Phase),
		"status.nodeName": s.Status.NodeName,
	}, &s.ObjectMeta, true)
}

// GetAttrs returns the labels and fields of a Server for selectors.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	s, ok := obj.(*stargate.Server)
	if !ok {
		return nil, nil, fmt.Errorf("not a Server: %T", obj)
	}
	return s.Labels, SelectableFields(s), nil
}

// Match selects Servers by label and field.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}

var tableConvertor = registry.TableConvertor[*stargate.Server]{
	Columns: []metav1.TableColumnDefinition{
		{Name: "IP", Type: "string", Description: "Address of the server in the datacenter."},
		{Name: "Phase", Type: "string", Description: "Pending, Provisioning, Ready or Failed."},
		{Name: "Node", Type: "string", Description: "Node the server registered as."},
		{Name: "Pod-CIDR", Type: "string", Description: "Pod CIDR allocated to the server's node."},
		{Name: "Routes", Type: "string", Description: "Route health: healthy layers out of those checked, or the reason of RoutesReady."},
		{Name: "Router", Type: "string", Priority: 1, Description: "Datacenter router used as SSH jump host."},
		{Name: "Last-Operation", Type: "string", Priority: 1, Description: "Most recent Operation on the server."},
		{Name: "Ready", Type: "string", Priority: 1, Description: "Status of the Ready condition."},
	},
	Cells: func(s *stargate.Server) []interface{} {
		ready := "Unknown"
		if c := meta.FindStatusCondition(s.Status.Conditions, stargate.ConditionReady); c != nil {
			ready = string(c.Status)
		}
		return []interface{}{s.Spec.IPAddress, string(s.Status.Phase), registry.OrNone(s.Status.NodeName),
			registry.OrNone(s.Status.PodCIDR), routesCell(s), registry.OrNone(s.Spec.RouterIP),
			registry.OrNone(s.Status.LastOperation), ready}
	},
}

// routesCell summarises route health in a few characters: "4/4" when
// every checked layer is healthy, else the unhealthy count and layers.
func routesCell(s *stargate.Server) string {
	if len(s.Status.Routes) == 0 {
		return "<unknown>"
	}
	healthy := 0
	var bad []string
	for _, l := range s.Status.Routes {
		if l.Healthy {
			healthy++
		} else {
			bad = append(bad, string(l.Layer))
		}
	}
	cell := fmt.Sprintf("%d/%d", healthy, len(s.Status.Routes))
	if len(bad) > 0 {
		cell += " (" + strings.Join(bad, ",") + ")"
	}
	return cell
}
