// Package datacenternetwork is the DatacenterNetwork admission plugin of
// stargate-apiserver. It keeps datacenter operators inside the network a
// cluster admin declared for their datacenter: a Server created or changed
// in a namespace that a Datacenter names must have its address in the
// datacenter's worker subnet, name the datacenter's router, and pin a pod
// CIDR only inside the datacenter's pod CIDR block. It also keeps a
// namespace to one Datacenter, and datacenters out of the cluster's own
// networks (see Options): a Datacenter's worker subnet overlaps neither the
// pod CIDR pool, the Service range, the cloud networks (the AKS VNet) nor
// another Datacenter's network; its router is in none of them; its pod
// CIDR block lies inside the pool; and any Server's pinned pod CIDR lies
// inside the pool.
//
// Servers in a namespace no Datacenter names are admitted: stargate-
// controller ignores them and says so in their status.
//
// The plugin reads Datacenters from an informer on this server's own
// loopback client. Two Datacenters for one namespace created within the
// informer's delay of each other are both admitted; only admins create
// Datacenters, and the plugin then takes the oldest as the namespace's.
package datacenternetwork

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/client-go/tools/cache"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/validation"
	"github.com/stargate-k8s/stargate/pkg/apiserver/admission/initializer"
	informers "github.com/stargate-k8s/stargate/pkg/generated/informers/externalversions"
)

// PluginName is the name under which the plugin is registered.
const PluginName = "DatacenterNetwork"

// namespaceIndex indexes Datacenters by spec.namespace.
const namespaceIndex = "spec.namespace"

// Register adds the plugin to plugins; opts are read when the plugin is
// made, after the flags are parsed.
func Register(plugins *admission.Plugins, opts *Options) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) {
		nets, err := opts.Networks()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", PluginName, err)
		}
		p := New()
		p.networks = nets
		return p, nil
	})
}

// Plugin checks Servers against their Datacenter and Datacenters against
// each other.
type Plugin struct {
	*admission.Handler
	// datacenters is the informer's store, indexed by namespaceIndex.
	datacenters cache.Indexer
	initErr     error
	// networks are the cluster's own networks.
	networks validation.ClusterNetworks
}

var (
	_ admission.ValidationInterface            = &Plugin{}
	_ initializer.WantsStargateInformerFactory = &Plugin{}
)

// New returns a plugin without its informer; SetStargateInformerFactory
// gives it one.
func New() *Plugin {
	return &Plugin{Handler: admission.NewHandler(admission.Create, admission.Update)}
}

// SetStargateInformerFactory registers the plugin's informer on
// Datacenters, indexed by namespace.
func (p *Plugin) SetStargateInformerFactory(f informers.SharedInformerFactory) {
	inf := f.Stargate().V1alpha1().Datacenters().Informer()
	if err := inf.AddIndexers(cache.Indexers{namespaceIndex: byNamespace}); err != nil {
		p.initErr = fmt.Errorf("%s: index Datacenters by namespace: %w", PluginName, err)
		return
	}
	p.setStore(inf.GetIndexer(), inf.HasSynced)
}

func (p *Plugin) setStore(datacenters cache.Indexer, synced func() bool) {
	p.datacenters = datacenters
	p.SetReadyFunc(synced)
}

// ValidateInitialization fails when the plugin has no informer.
func (p *Plugin) ValidateInitialization() error {
	if p.initErr != nil {
		return p.initErr
	}
	if p.datacenters == nil {
		return fmt.Errorf("%s: no informer on Datacenters", PluginName)
	}
	return nil
}

func byNamespace(obj any) ([]string, error) {
	d, ok := obj.(*v1alpha1.Datacenter)
	if !ok {
		return nil, fmt.Errorf("not a Datacenter: %T", obj)
	}
	return []string{d.Spec.Namespace}, nil
}

var (
	serversResource     = stargate.Resource("servers")
	datacentersResource = stargate.Resource("datacenters")
)

// Validate checks the create or spec update of a Server or a Datacenter. Status updates, other subresources (servers/repave creates
// an Operation, not a Server) and other resources pass.
func (p *Plugin) Validate(ctx context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if a.GetSubresource() != "" {
		return nil
	}
	switch a.GetResource().GroupResource() {
	case serversResource:
		if err := p.ready(a); err != nil {
			return err
		}
		return p.validateServer(a)
	case datacentersResource:
		if err := p.ready(a); err != nil {
			return err
		}
		return p.validateDatacenter(a)
	}
	return nil
}

func (p *Plugin) ready(a admission.Attributes) error {
	if !p.WaitForReady() {
		return admission.NewForbidden(a, errors.New("not yet ready to handle request: Datacenters are still being read"))
	}
	return nil
}

func (p *Plugin) validateServer(a admission.Attributes) error {
	s, ok := a.GetObject().(*stargate.Server)
	if !ok {
		return apierrors.NewBadRequest(fmt.Sprintf("unexpected object %T for servers", a.GetObject()))
	}
	var oldSpec *stargate.ServerSpec
	if a.GetOperation() == admission.Update {
		old, ok := a.GetOldObject().(*stargate.Server)
		if !ok {
			return apierrors.NewBadRequest(fmt.Sprintf("unexpected old object %T for servers", a.GetOldObject()))
		}
		oldSpec = &old.Spec
	}
	errs := validation.ValidateServerNetworks(&s.Spec, oldSpec, p.networks)
	dc, err := p.datacenterOf(a.GetNamespace())
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if dc != nil {
		var spec stargate.DatacenterSpec
		if err := v1alpha1.Convert_v1alpha1_DatacenterSpec_To_stargate_DatacenterSpec(&dc.Spec, &spec, nil); err != nil {
			return apierrors.NewInternalError(fmt.Errorf("convert Datacenter %s: %w", dc.Name, err))
		}
		errs = append(errs, validation.ValidateServerInDatacenter(&s.Spec, oldSpec, dc.Name, &spec)...)
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(a.GetKind().GroupKind(), s.Name, errs)
	}
	return nil
}

func (p *Plugin) validateDatacenter(a admission.Attributes) error {
	d, ok := a.GetObject().(*stargate.Datacenter)
	if !ok {
		return apierrors.NewBadRequest(fmt.Sprintf("unexpected object %T for datacenters", a.GetObject()))
	}
	var oldSpec *stargate.DatacenterSpec
	if a.GetOperation() == admission.Update {
		old, ok := a.GetOldObject().(*stargate.Datacenter)
		if !ok {
			return apierrors.NewBadRequest(fmt.Sprintf("unexpected old object %T for datacenters", a.GetOldObject()))
		}
		oldSpec = &old.Spec
	}
	var errs field.ErrorList
	if oldSpec == nil { // spec.namespace is immutable
		holder, err := p.datacenterOf(d.Spec.Namespace)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		if holder != nil && holder.Name != d.Name {
			errs = append(errs, field.Invalid(field.NewPath("spec", "namespace"), d.Spec.Namespace,
				fmt.Sprintf("namespace %s is already the datacenter of Datacenter %s; a namespace has one Datacenter", d.Spec.Namespace, holder.Name)))
		}
	}
	others, err := p.otherDatacenters(d.Name)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	errs = append(errs, validation.ValidateDatacenterNetworks(&d.Spec, oldSpec, p.networks, others)...)
	if len(errs) > 0 {
		return apierrors.NewInvalid(a.GetKind().GroupKind(), d.Name, errs)
	}
	return nil
}

// otherDatacenters are the Datacenters other than name, converted for
// validation.
func (p *Plugin) otherDatacenters(name string) ([]validation.NamedDatacenter, error) {
	var out []validation.NamedDatacenter
	for _, o := range p.datacenters.List() {
		d, ok := o.(*v1alpha1.Datacenter)
		if !ok || d.Name == name {
			continue
		}
		var spec stargate.DatacenterSpec
		if err := v1alpha1.Convert_v1alpha1_DatacenterSpec_To_stargate_DatacenterSpec(&d.Spec, &spec, nil); err != nil {
			return nil, fmt.Errorf("convert Datacenter %s: %w", d.Name, err)
		}
		out = append(out, validation.NamedDatacenter{Name: d.Name, Spec: &spec})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// datacenterOf is the Datacenter naming namespace ns, nil when there is
// none. Should two name it, the oldest counts.
func (p *Plugin) datacenterOf(ns string) (*v1alpha1.Datacenter, error) {
	objs, err := p.datacenters.ByIndex(namespaceIndex, ns)
	if err != nil {
		return nil, fmt.Errorf("look up the Datacenter of namespace %s: %w", ns, err)
	}
	var dcs []*v1alpha1.Datacenter
	for _, o := range objs {
		if d, ok := o.(*v1alpha1.Datacenter); ok {
			dcs = append(dcs, d)
		}
	}
	if len(dcs) == 0 {
		return nil, nil
	}
	sort.Slice(dcs, func(i, j int) bool {
		ti, tj := dcs[i].CreationTimestamp, dcs[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return dcs[i].Name < dcs[j].Name
	})
	return dcs[0], nil
}
