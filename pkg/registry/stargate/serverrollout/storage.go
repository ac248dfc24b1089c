package serverrollout

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	registry "github.com/stargate-k8s/stargate/pkg/registry/stargate"
)

// REST is the storage of ServerRollouts.
type REST struct {
	*genericregistry.Store
}

// NewREST returns the storage of ServerRollouts and of their status.
func NewREST(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter) (*REST, *registry.StatusREST, error) {
	strategy := NewStrategy(scheme)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &stargate.ServerRollout{} },
		NewListFunc:               func() runtime.Object { return &stargate.ServerRolloutList{} },
		PredicateFunc:             Match,
		DefaultQualifiedResource:  stargate.Resource("serverrollouts"),
		SingularQualifiedResource: stargate.Resource("serverrollout"),

		CreateStrategy:      strategy,
		UpdateStrategy:      strategy,
		DeleteStrategy:      strategy,
		ResetFieldsStrategy: strategy,

		TableConvertor: tableConvertor,
	}
	options := &generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: GetAttrs}
	if err := store.CompleteWithOptions(options); err != nil {
		return nil, nil, err
	}
	status := registry.NewStatusREST(store, NewStatusStrategy(strategy))
	return &REST{store}, status, nil
}

// ShortNames implements rest.ShortNamesProvider.
func (r *REST) ShortNames() []string { return []string{"sro"} }

// Categories implements rest.CategoriesProvider.
func (r *REST) Categories() []string { return []string{"stargate"} }
