package provisioningprofile

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// REST is the storage of ProvisioningProfiles.
type REST struct {
	*genericregistry.Store
}

// NewREST returns the storage of ProvisioningProfiles.
func NewREST(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter) (*REST, error) {
	strategy := NewStrategy(scheme)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &stargate.ProvisioningProfile{} },
		NewListFunc:               func() runtime.Object { return &stargate.ProvisioningProfileList{} },
		PredicateFunc:             Match,
		DefaultQualifiedResource:  stargate.Resource("provisioningprofiles"),
		SingularQualifiedResource: stargate.Resource("provisioningprofile"),

		CreateStrategy: strategy,
		UpdateStrategy: strategy,
		DeleteStrategy: strategy,

		TableConvertor: tableConvertor,
	}
	options := &generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: GetAttrs}
	if err := store.CompleteWithOptions(options); err != nil {
		return nil, err
	}
	return &REST{store}, nil
}

// ShortNames implements rest.ShortNamesProvider.
func (r *REST) ShortNames() []string { return []string{"profile", "pp"} }

// Categories implements rest.CategoriesProvider.
func (r *REST) Categories() []string { return []string{"stargate"} }
