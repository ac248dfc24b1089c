package server

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/keymutex"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	registry "github.com/stargate-k8s/stargate/pkg/registry/stargate"
)

// REST is the storage of Servers.
type REST struct {
	*genericregistry.Store
}

// Storage is a Server store and its subresources.
type Storage struct {
	Server *REST
	Status *registry.StatusREST
	Repave *RepaveREST
	Reboot *RebootREST
	Routes *RoutesREST
	// Operations creates Operations claiming their Server; serve it as
	// the create of operations.
	Operations *OperationsREST
}

// Operations is what a repave needs of the Operation store.
type Operations interface {
	rest.Getter
	rest.Creater
}

// NewStorage returns the storage of Servers and of their subresources.
// Repaves look profiles up in profiles and create Operations in operations.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, profiles rest.Getter, operations Operations) (*Storage, error) {
	strategy := NewStrategy(scheme)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &stargate.Server{} },
		NewListFunc:               func() runtime.Object { return &stargate.ServerList{} },
		PredicateFunc:             Match,
		DefaultQualifiedResource:  stargate.Resource("servers"),
		SingularQualifiedResource: stargate.Resource("server"),

		CreateStrategy:      strategy,
		UpdateStrategy:      strategy,
		DeleteStrategy:      strategy,
		ResetFieldsStrategy: strategy,

		TableConvertor: tableConvertor,
	}
	options := &generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: GetAttrs}
	if err := store.CompleteWithOptions(options); err != nil {
		return nil, err
	}
	status := registry.NewStatusREST(store, NewStatusStrategy(strategy))
	c := &claimer{locks: keymutex.NewHashed(0), servers: store, status: status, profiles: profiles, operations: operations}
	return &Storage{
		Server:     &REST{store},
		Status:     status,
		Repave:     &RepaveREST{c},
		Reboot:     &RebootREST{c},
		Routes:     &RoutesREST{servers: store},
		Operations: &OperationsREST{Creater: operations, claimer: c},
	}, nil
}

// ShortNames implements rest.ShortNamesProvider.
func (r *REST) ShortNames() []string { return []string{"srv"} }

// Categories implements rest.CategoriesProvider.
func (r *REST) Categories() []string { return []string{"stargate"} }
