// Package apiserver is stargate-apiserver: the aggregated API server of
// stargate.io, built on k8s.io/apiserver. It wires the registries into a
// generic API server, and starts an embedded etcd when no external one is
// named.
package apiserver

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/install"
	informers "github.com/stargate-k8s/stargate/pkg/generated/informers/externalversions"
	"github.com/stargate-k8s/stargate/pkg/registry/stargate/datacenter"
	"github.com/stargate-k8s/stargate/pkg/registry/stargate/operation"
	"github.com/stargate-k8s/stargate/pkg/registry/stargate/provisioningprofile"
	"github.com/stargate-k8s/stargate/pkg/registry/stargate/server"
	"github.com/stargate-k8s/stargate/pkg/registry/stargate/serverrollout"
)

var (
	// Scheme holds the stargate.io types and the meta types the server speaks.
	Scheme = runtime.NewScheme()
	// Codecs encodes and decodes the types of Scheme.
	Codecs = serializer.NewCodecFactory(Scheme)
)

func init() {
	install.Install(Scheme)
	// Options types (GetOptions, ListOptions, ...) in the core group.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned,
		&metav1.Status{},
		&metav1.APIVersions{},
		&metav1.APIGroupList{},
		&metav1.APIGroup{},
		&metav1.APIResourceList{},
	)
}

// Config is the configuration of stargate-apiserver.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	// Informers watch this server's own stargate.io objects through its
	// loopback client, for admission plugins (DatacenterNetwork). Nil when
	// no plugin asked for them.
	Informers informers.SharedInformerFactory
}

// CompletedConfig is a Config with defaults filled in.
type CompletedConfig struct {
	generic   genericapiserver.CompletedConfig
	informers informers.SharedInformerFactory
}

// Complete fills in defaults.
func (c *Config) Complete() CompletedConfig {
	return CompletedConfig{generic: c.GenericConfig.Complete(), informers: c.Informers}
}

// Server is a running stargate-apiserver.
type Server struct {
	GenericAPIServer *genericapiserver.GenericAPIServer
}

// New builds the server with the stargate.io group installed.
func (c CompletedConfig) New() (*Server, error) {
	generic, err := c.generic.New("stargate-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}
	storage, err := newStorage(c.generic.RESTOptionsGetter)
	if err != nil {
		return nil, err
	}
	group := genericapiserver.NewDefaultAPIGroupInfo(stargate.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	group.VersionedResourcesStorageMap["v1alpha1"] = storage
	if err := generic.InstallAPIGroup(&group); err != nil {
		return nil, fmt.Errorf("install API group %s: %w", stargate.GroupName, err)
	}
	if f := c.informers; f != nil {
		// Once the server listens, so the loopback client can reach it.
		// Admission plugins wait for the caches before they decide.
		generic.AddPostStartHookOrDie("start-stargate-informers", func(ctx genericapiserver.PostStartHookContext) error {
			f.Start(ctx.Done())
			return nil
		})
	}
	return &Server{GenericAPIServer: generic}, nil
}

// claimingOperations is the Operation store whose create claims the
// Operation's Server, as servers/NAME/repave does.
type claimingOperations struct {
	*operation.REST
	claiming *server.OperationsREST
}

// Create implements rest.Creater.
func (o claimingOperations) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	return o.claiming.Create(ctx, obj, createValidation, options)
}

// newStorage builds the storage of every v1alpha1 resource and subresource.
func newStorage(optsGetter generic.RESTOptionsGetter) (map[string]rest.Storage, error) {
	datacenters, datacenterStatus, err := datacenter.NewREST(Scheme, optsGetter)
	if err != nil {
		return nil, fmt.Errorf("datacenters storage: %w", err)
	}
	profiles, err := provisioningprofile.NewREST(Scheme, optsGetter)
	if err != nil {
		return nil, fmt.Errorf("provisioningprofiles storage: %w", err)
	}
	operations, operationStatus, err := operation.NewREST(Scheme, optsGetter)
	if err != nil {
		return nil, fmt.Errorf("operations storage: %w", err)
	}
	servers, err := server.NewStorage(Scheme, optsGetter, profiles, operations)
	if err != nil {
		return nil, fmt.Errorf("servers storage: %w", err)
	}
	rollouts, rolloutStatus, err := serverrollout.NewREST(Scheme, optsGetter)
	if err != nil {
		return nil, fmt.Errorf("serverrollouts storage: %w", err)
	}
	return map[string]rest.Storage{
		"datacenters":           datacenters,
		"datacenters/status":    datacenterStatus,
		"servers":               servers.Server,
		"servers/status":        servers.Status,
		"servers/repave":        servers.Repave,
		"servers/reboot":        servers.Reboot,
		"servers/routes":        servers.Routes,
		"provisioningprofiles":  profiles,
		"operations":            claimingOperations{operations, servers.Operations},
		"operations/status":     operationStatus,
		"serverrollouts":        rollouts,
		"serverrollouts/status": rolloutStatus,
	}, nil
}
