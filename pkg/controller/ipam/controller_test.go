package ipam

import (
	"context"
	"net/netip"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
)

// staleLister answers List of Servers with the objects as first seen, like
// an informer cache that has not caught up with this process's writes.
type staleLister struct {
	client.Client
	servers v1alpha1.ServerList
}

func (s *staleLister) List(ctx context.Context, l client.ObjectList, opts ...client.ListOption) error {
	if sl, ok := l.(*v1alpha1.ServerList); ok {
		s.servers.DeepCopyInto(sl)
		return nil
	}
	return s.Client.List(ctx, l, opts...)
}

func server(name string) *v1alpha1.Server {
	return &v1alpha1.Server{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "dc"},
		Spec: v1alpha1.ServerSpec{Hostname: name, IPAddress: "10.50.1.10", RouterIP: "100.64.1.1"}}
}

// dcOf declares namespace dc a datacenter its Servers fit.
func dcOf() *v1alpha1.Datacenter {
	return &v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc"},
		Spec: v1alpha1.DatacenterSpec{Namespace: "dc", WorkerSubnet: "10.50.1.0/24", Router: v1alpha1.DatacenterRouter{IP: "100.64.1.1"}, AgentGateway: "10.50.1.1"}}
}

func TestServerOutsideAnyDatacenterGetsNoPodCIDR(t *testing.T) {
	ctx := context.Background()
	outside := server("a")
	outside.Namespace = "not-a-dc"
	misfit := server("b")
	misfit.Spec.IPAddress = "10.99.0.10" // made before its Datacenter
	kube := fake.NewClientBuilder().WithScheme(manager.Scheme).WithObjects(dcOf(), outside, misfit).WithStatusSubresource(&v1alpha1.Server{}).Build()
	c := New()
	c.cfg, _ = c.Config()
	c.client, c.reader, c.recorder = kube, kube, &record.FakeRecorder{}
	c.recent = map[types.NamespacedName]netip.Prefix{}
	for _, s := range []*v1alpha1.Server{outside, misfit} {
		key := client.ObjectKeyFromObject(s)
		if _, err := c.Reconcile(ctx, ctrl.Request{NamespacedName: key}); err != nil {
			t.Fatal(err)
		}
		var got v1alpha1.Server
		if err := kube.Get(ctx, key, &got); err != nil {
			t.Fatal(err)
		}
		if got.Status.PodCIDR != "" || len(got.Finalizers) != 0 {
			t.Errorf("%s: podCIDR %q, finalizers %v; want none for a Server outside its datacenter", key, got.Status.PodCIDR, got.Finalizers)
		}
	}
}

func TestBackToBackAllocationsDifferThoughTheCacheLags(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientBuilder().WithScheme(manager.Scheme).WithObjects(dcOf(), server("a"), server("b")).WithStatusSubresource(&v1alpha1.Server{}).Build()
	stale := &staleLister{Client: kube}
	if err := kube.List(ctx, &stale.servers); err != nil {
		t.Fatal(err)
	}
	c := New()
	var err error
	if c.cfg, err = c.Config(); err != nil {
		t.Fatal(err)
	}
	c.client, c.reader, c.recorder = stale, kube, &record.FakeRecorder{}
	c.recent = map[types.NamespacedName]netip.Prefix{}
	for _, n := range []string{"a", "b"} {
		if _, err := c.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "dc", Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	var a, b v1alpha1.Server
	_ = kube.Get(ctx, types.NamespacedName{Namespace: "dc", Name: "a"}, &a)
	_ = kube.Get(ctx, types.NamespacedName{Namespace: "dc", Name: "b"}, &b)
	if a.Status.PodCIDR == "" || a.Status.PodCIDR == b.Status.PodCIDR {
		t.Fatalf("a=%q b=%q", a.Status.PodCIDR, b.Status.PodCIDR)
	}
	for _, s := range []v1alpha1.Server{a, b} {
		if len(s.Finalizers) != 2 || s.Finalizers[0] != stargate.FinalizerPodCIDR || s.Finalizers[1] != stargate.FinalizerRoutes {
			t.Fatalf("%s finalizers %v", s.Name, s.Finalizers)
		}
	}
}

func TestDeletedServerKeepsItsCIDRUntilRoutesAreGone(t *testing.T) {
	ctx := context.Background()
	s := server("a")
	s.Finalizers = []string{stargate.FinalizerPodCIDR, stargate.FinalizerRoutes}
	s.Status.PodCIDR = "10.244.0.0/24"
	kube := fake.NewClientBuilder().WithScheme(manager.Scheme).WithObjects(s).WithStatusSubresource(&v1alpha1.Server{}).Build()
	if err := kube.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	c := New()
	c.cfg, _ = c.Config()
	c.client, c.reader, c.recorder = kube, kube, &record.FakeRecorder{}
	c.recent = map[types.NamespacedName]netip.Prefix{}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "dc", Name: "a"}}
	if _, err := c.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	var got v1alpha1.Server
	if err := kube.Get(ctx, req.NamespacedName, &got); err != nil || len(got.Finalizers) != 2 {
		t.Fatalf("released while the routes finalizer is held: %v %v", got.Finalizers, err)
	}
	// The routes reconciler lets go; now the CIDR is released.
	got.Finalizers = []string{stargate.FinalizerPodCIDR}
	if err := kube.Update(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := kube.Get(ctx, req.NamespacedName, &got); err == nil {
		t.Fatalf("Server still there with finalizers %v", got.Finalizers)
	}
}
