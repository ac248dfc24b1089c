package server

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// RoutesREST serves servers/NAME/routes: the route health of a Server on
// every layer, from its status.
type RoutesREST struct {
	servers rest.Getter
}

var _ rest.Getter = &RoutesREST{}

// New returns an empty ServerRoutes.
func (r *RoutesREST) New() runtime.Object { return &stargate.ServerRoutes{} }

// Destroy is a no-op: the Server store owns the storage.
func (r *RoutesREST) Destroy() {}

// Get returns the route health of the named Server.
func (r *RoutesREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	obj, err := r.servers.Get(ctx, name, options)
	if err != nil {
		return nil, err
	}
	return RoutesOf(obj.(*stargate.Server)), nil
}

// RoutesOf builds the ServerRoutes of a Server. Every layer is listed, in
// a fixed order; a layer the status does not mention is NotChecked.
func RoutesOf(s *stargate.Server) *stargate.ServerRoutes {
	out := &stargate.ServerRoutes{
		ObjectMeta: metav1.ObjectMeta{
			Name:              s.Name,
			Namespace:         s.Namespace,
			UID:               s.UID,
			ResourceVersion:   s.ResourceVersion,
			CreationTimestamp: s.CreationTimestamp,
		},
		PodCIDR: s.Status.PodCIDR,
		Healthy: true,
	}
	byLayer := map[stargate.RouteLayer]stargate.RouteLayerStatus{}
	for _, l := range s.Status.Routes {
		byLayer[l.Layer] = l
	}
	for _, layer := range stargate.AllRouteLayers {
		l, ok := byLayer[layer]
		if !ok {
			l = stargate.RouteLayerStatus{
				Layer:   layer,
				Reason:  stargate.ReasonNotChecked,
				Message: fmt.Sprintf("the %s layer has not been checked for this server yet", layer),
			}
		}
		out.Healthy = out.Healthy && l.Healthy
		out.Layers = append(out.Layers, *l.DeepCopy())
	}
	return out
}
