package datacenternetwork

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/tools/cache"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/generated/clientset/versioned/fake"
	informers "github.com/stargate-k8s/stargate/pkg/generated/informers/externalversions"
)

func datacenter(name, ns string, created time.Time) *v1alpha1.Datacenter {
	return &v1alpha1.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)},
		Spec: v1alpha1.DatacenterSpec{
			Namespace:    ns,
			WorkerSubnet: "10.50.1.0/24",
			Router:       v1alpha1.DatacenterRouter{IP: "100.64.0.1"},
			AgentGateway: "10.50.1.1",
			PodCIDRBlock: "10.244.128.0/17",
		},
	}
}

func server(ns, ip string) *stargate.Server {
	return &stargate.Server{
		ObjectMeta: metav1.ObjectMeta{Name: "worker-1", Namespace: ns},
		Spec: stargate.ServerSpec{
			Hostname: "worker-1", IPAddress: ip, RouterIP: "100.64.0.1", SSHPort: 22,
			ProvisioningProfileRef: &stargate.LocalObjectReference{Name: "default"},
		},
	}
}

var operator = &user.DefaultInfo{Name: "operator"}

func serverAttrs(obj, old *stargate.Server, sub string) admission.Attributes {
	op := admission.Create
	var oldObj runtime.Object
	if old != nil {
		op, oldObj = admission.Update, old
	}
	return admission.NewAttributesRecord(obj, oldObj, stargate.Kind("Server").WithVersion(""), obj.Namespace, obj.Name,
		stargate.Resource("servers").WithVersion(""), sub, op, nil, false, operator)
}

func datacenterAttrs(obj *stargate.Datacenter) admission.Attributes {
	return admission.NewAttributesRecord(obj, nil, stargate.Kind("Datacenter").WithVersion(""), "", obj.Name,
		stargate.Resource("datacenters").WithVersion(""), "", admission.Create, nil, false, operator)
}

// newPlugin is the plugin with a store holding dcs, as its informer fills it.
func newPlugin(t *testing.T, dcs ...*v1alpha1.Datacenter) *Plugin {
	t.Helper()
	store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{namespaceIndex: byNamespace})
	for _, d := range dcs {
		if err := store.Add(d); err != nil {
			t.Fatal(err)
		}
	}
	p := New()
	p.setStore(store, func() bool { return true })
	if err := p.ValidateInitialization(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	east := datacenter("dc-east", "dc-east", t0)
	// A second Datacenter for dc-east that slipped in within the informer's
	// delay: the older one counts.
	late := datacenter("dc-east-late", "dc-east", t0.Add(time.Minute))
	late.Spec.WorkerSubnet, late.Spec.AgentGateway = "10.9.0.0/16", "10.9.0.1"
	p := newPlugin(t, late, east)

	moved := func(ip string) *stargate.Server { return server("dc-east", ip) }
	pinned := server("dc-east", "10.50.1.11")
	pinned.Spec.PodCIDR = "10.244.1.0/24"
	labelled := server("dc-east", "10.9.9.9")
	labelled.Labels = map[string]string{"rack": "r1"}
	internalDC := func(name, ns string) *stargate.Datacenter {
		return &stargate.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: stargate.DatacenterSpec{Namespace: ns}}
	}

	tests := []struct {
		name    string
		a       admission.Attributes
		wantErr string // "" means admitted
	}{
		{name: "server inside its datacenter", a: serverAttrs(server("dc-east", "10.50.1.11"), nil, "")},
		{name: "server outside its datacenter's subnet", a: serverAttrs(server("dc-east", "10.9.9.9"), nil, ""),
			wantErr: `Server.stargate.io "worker-1" is invalid: spec.ipAddress: Invalid value: "10.9.9.9": not inside the worker subnet 10.50.1.0/24 of Datacenter dc-east`},
		{name: "server naming another router", a: serverAttrs(func() *stargate.Server {
			s := server("dc-east", "10.50.1.11")
			s.Spec.RouterIP = "203.0.113.66"
			return s
		}(), nil, ""), wantErr: `spec.routerIP: Invalid value: "203.0.113.66": must be 100.64.0.1, the router of Datacenter dc-east`},
		{name: "server pinning a pod CIDR outside the block", a: serverAttrs(pinned, nil, ""),
			wantErr: `spec.podCIDR: Invalid value: "10.244.1.0/24": not inside the pod CIDR block 10.244.128.0/17 of Datacenter dc-east`},
		{name: "server in a namespace without a datacenter", a: serverAttrs(server("dc-west", "10.9.9.9"), nil, "")},
		{name: "update moving a server out", a: serverAttrs(moved("10.9.9.9"), moved("10.50.1.11"), ""),
			wantErr: `spec.ipAddress: Invalid value: "10.9.9.9"`},
		{name: "update of an old server's labels", a: serverAttrs(labelled, server("dc-east", "10.9.9.9"), "")},
		{name: "status update", a: serverAttrs(moved("10.9.9.9"), moved("10.9.9.9"), "status")},
		{name: "first datacenter of a namespace", a: datacenterAttrs(internalDC("dc-west", "dc-west"))},
		{name: "second datacenter of a namespace", a: datacenterAttrs(internalDC("dc-east-2", "dc-east")),
			wantErr: `Datacenter.stargate.io "dc-east-2" is invalid: spec.namespace: Invalid value: "dc-east": namespace dc-east is already the datacenter of Datacenter dc-east; a namespace has one Datacenter`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Validate(context.Background(), tc.a, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("denied: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("admitted, want %q", tc.wantErr)
			}
			if !apierrors.IsInvalid(err) {
				t.Errorf("error is not 422 Invalid: %v", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q lacks %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateInitializationWithoutInformer(t *testing.T) {
	if err := New().ValidateInitialization(); err == nil {
		t.Fatal("a plugin without an informer on Datacenters initialized")
	}
}

// The plugin reads Datacenters through the informer factory it is given,
// and waits for its cache before it decides.
func TestInformerFactory(t *testing.T) {
	client := fake.NewSimpleClientset(datacenter("dc-east", "dc-east", time.Now()))
	f := informers.NewSharedInformerFactory(client, 0)
	p := New()
	p.SetStargateInformerFactory(f)
	if err := p.ValidateInitialization(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.Start(ctx.Done())
	err := p.Validate(ctx, serverAttrs(server("dc-east", "10.9.9.9"), nil, ""), nil)
	if err == nil || !strings.Contains(err.Error(), "not inside the worker subnet 10.50.1.0/24 of Datacenter dc-east") {
		t.Fatalf("got %v, want the server refused for its address", err)
	}
}

// The cluster's networks from the flags' defaults keep Datacenters and
// pinned pod CIDRs out of the pod pool, the Service range and the AKS
// VNet, and Datacenters out of each other's subnets.
func TestValidateClusterNetworks(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	p := newPlugin(t, datacenter("dc-east", "dc-east", t0))
	nets, err := NewOptions().Networks()
	if err != nil {
		t.Fatal(err)
	}
	p.networks = nets
	dc := func(name, subnet, gw string) *stargate.Datacenter {
		return &stargate.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: stargate.DatacenterSpec{
			Namespace: name, WorkerSubnet: subnet, AgentGateway: gw, Router: stargate.DatacenterRouter{IP: "100.64.0.2"}}}
	}
	update := func(obj, old *stargate.Datacenter) admission.Attributes {
		return admission.NewAttributesRecord(obj, old, stargate.Kind("Datacenter").WithVersion(""), "", obj.Name,
			stargate.Resource("datacenters").WithVersion(""), "", admission.Update, nil, false, operator)
	}
	pinned := server("dc-west", "10.9.9.9")
	pinned.Spec.PodCIDR = "128.0.0.0/1"
	tests := []struct {
		name    string
		a       admission.Attributes
		wantErr string
	}{
		{"a datacenter of its own", datacenterAttrs(dc("dc-west", "10.50.2.0/24", "10.50.2.1")), ""},
		{"a datacenter in the AKS VNet", datacenterAttrs(dc("dc-west", "10.224.1.0/24", "10.224.1.1")),
			`spec.workerSubnet: Invalid value: "10.224.1.0/24": overlaps the cloud network 10.224.0.0/12`},
		{"a datacenter on another's subnet", datacenterAttrs(dc("dc-west", "10.50.1.0/24", "10.50.1.1")),
			`spec.workerSubnet: Invalid value: "10.50.1.0/24": overlaps the worker subnet 10.50.1.0/24 of Datacenter dc-east`},
		{"moving a datacenter into the Service range", update(dc("dc-west", "10.0.7.0/24", "10.0.7.1"), dc("dc-west", "10.50.2.0/24", "10.50.2.1")),
			`spec.workerSubnet: Invalid value: "10.0.7.0/24": overlaps the Service range 10.0.0.0/16`},
		{"relabelling a datacenter declared before the flags", update(dc("dc-west", "10.0.7.0/24", "10.0.7.1"), dc("dc-west", "10.0.7.0/24", "10.0.7.1")), ""},
		{"a server pinning a pod CIDR outside the pool", serverAttrs(pinned, nil, ""),
			`spec.podCIDR: Invalid value: "128.0.0.0/1": not inside the pod CIDR pool 10.244.0.0/16`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Validate(context.Background(), tc.a, nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("denied: %v", err)
			case tc.wantErr != "" && (err == nil || !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want 422 with %q", err, tc.wantErr)
			}
		})
	}
}
