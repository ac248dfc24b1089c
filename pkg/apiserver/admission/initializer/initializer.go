// Package initializer hands stargate-apiserver's admission plugins what
// the generic initializers of k8s.io/apiserver cannot: informers on the
// server's own stargate.io objects, as sample-apiserver's wardleinitializer
// does.
package initializer

import (
	"k8s.io/apiserver/pkg/admission"

	informers "github.com/stargate-k8s/stargate/pkg/generated/informers/externalversions"
)

// WantsStargateInformerFactory is a plugin that reads stargate.io objects
// from informers.
type WantsStargateInformerFactory interface {
	SetStargateInformerFactory(informers.SharedInformerFactory)
	admission.InitializationValidator
}

type pluginInitializer struct {
	informers informers.SharedInformerFactory
}

// New returns an initializer that gives f to every plugin that wants it.
// The plugins register their informers with f; the caller starts f.
func New(f informers.SharedInformerFactory) admission.PluginInitializer {
	return pluginInitializer{informers: f}
}

// Initialize implements admission.PluginInitializer.
func (i pluginInitializer) Initialize(plugin admission.Interface) {
	if wants, ok := plugin.(WantsStargateInformerFactory); ok {
		wants.SetStargateInformerFactory(i.informers)
	}
}
