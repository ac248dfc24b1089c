package datacenter

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

func scheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	sch := runtime.NewScheme()
	if err := v1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	return sch
}

func dcEast() *v1.Datacenter {
	return &v1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "east"}, Spec: v1.DatacenterSpec{
		Namespace: "dc-east", WorkerSubnet: "10.50.1.0/24", Router: v1.DatacenterRouter{IP: "100.64.0.1"}, AgentGateway: "10.50.1.1", PodCIDRBlock: "10.244.16.0/20",
	}}
}

func server(ns string, mutate func(*v1.Server)) *v1.Server {
	s := &v1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "w1", Generation: 3},
		Spec: v1.ServerSpec{Hostname: "w1", IPAddress: "10.50.1.10", RouterIP: "100.64.0.1"}}
	if mutate != nil {
		mutate(s)
	}
	return s
}

func TestCheckSaysWhetherAServerIsInsideItsDatacenter(t *testing.T) {
	for _, tc := range []struct {
		name        string
		server      *v1.Server
		dc          *v1.Datacenter
		status      metav1.ConditionStatus
		reason      string
		msgContains []string
	}{
		{"inside", server("dc-east", nil), dcEast(), metav1.ConditionTrue, stargate.ReasonInDatacenterNetwork, []string{"east", "10.50.1.0/24"}},
		{"no Datacenter", server("dc-west", nil), nil, metav1.ConditionFalse, stargate.ReasonNoDatacenter,
			[]string{"namespace dc-west", "a Datacenter whose spec.namespace is dc-west", "stargate-datacenter-admin"}},
		{"address outside the worker subnet", server("dc-east", func(s *v1.Server) { s.Spec.IPAddress = "10.99.0.10" }), dcEast(),
			metav1.ConditionFalse, stargate.ReasonNotInDatacenterNetwork, []string{"spec.ipAddress", "10.50.1.0/24", "Datacenter east"}},
		{"another router", server("dc-east", func(s *v1.Server) { s.Spec.RouterIP = "100.64.9.9" }), dcEast(),
			metav1.ConditionFalse, stargate.ReasonNotInDatacenterNetwork, []string{"spec.routerIP", "100.64.0.1"}},
		{"pinned pod CIDR outside the block", server("dc-east", func(s *v1.Server) { s.Spec.PodCIDR = "10.244.200.0/24" }), dcEast(),
			metav1.ConditionFalse, stargate.ReasonNotInDatacenterNetwork, []string{"spec.podCIDR", "10.244.16.0/20"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Check(tc.server, tc.dc)
			if c.Type != stargate.ConditionInDatacenter || c.Status != tc.status || c.Reason != tc.reason || c.ObservedGeneration != 3 {
				t.Fatalf("condition %+v, want %s %s %s at generation 3", c, stargate.ConditionInDatacenter, tc.status, tc.reason)
			}
			for _, w := range tc.msgContains {
				if !strings.Contains(c.Message, w) {
					t.Errorf("message %q does not say %q", c.Message, w)
				}
			}
		})
	}
}

func TestFindPicksTheDatacenterOfTheNamespace(t *testing.T) {
	old, newer := dcEast(), dcEast()
	old.Name, old.CreationTimestamp = "east-old", metav1.NewTime(time.Unix(100, 0))
	newer.Name, newer.CreationTimestamp = "east-new", metav1.NewTime(time.Unix(200, 0))
	other := dcEast()
	other.Name, other.Spec.Namespace = "west", "dc-west"
	kube := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(newer, other, old).Build()
	ctx := context.Background()
	if dc, err := Find(ctx, kube, "dc-east"); err != nil || dc == nil || dc.Name != "east-old" {
		t.Errorf("Find(dc-east) = %v, %v; want the oldest, east-old", dc, err)
	}
	if dc, err := Find(ctx, kube, "dc-north"); err != nil || dc != nil {
		t.Errorf("Find(dc-north) = %v, %v; want none", dc, err)
	}
	idx, err := NewIndex(ctx, kube)
	if err != nil {
		t.Fatal(err)
	}
	if dc, c := idx.Check(server("dc-east", nil)); dc == nil || dc.Name != "east-old" || c.Status != metav1.ConditionTrue {
		t.Errorf("Index.Check = %v, %+v; want east-old, True", dc, c)
	}
	if dc, c := idx.Check(server("dc-north", nil)); dc != nil || c.Reason != stargate.ReasonNoDatacenter {
		t.Errorf("Index.Check = %v, %+v; want nil, NoDatacenter", dc, c)
	}
}

// The reconciler writes InDatacenter and Ready False for a Server outside
// any datacenter, True when its Datacenter is declared, and writes nothing
// when nothing changed.
func TestServerOutsideAnyDatacenterSaysSoInACondition(t *testing.T) {
	ctx := context.Background()
	s := server("dc-east", nil)
	kube := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(s).WithStatusSubresource(&v1.Server{}).Build()
	r := &Reconciler{Client: kube}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(s)}
	get := func() *v1.Server {
		t.Helper()
		var got v1.Server
		if err := kube.Get(ctx, req.NamespacedName, &got); err != nil {
			t.Fatal(err)
		}
		return &got
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	got := get()
	in, ready := meta.FindStatusCondition(got.Status.Conditions, stargate.ConditionInDatacenter), meta.FindStatusCondition(got.Status.Conditions, stargate.ConditionReady)
	if in == nil || in.Status != metav1.ConditionFalse || in.Reason != stargate.ReasonNoDatacenter {
		t.Fatalf("InDatacenter = %+v, want False %s", in, stargate.ReasonNoDatacenter)
	}
	if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != stargate.ReasonNoDatacenter {
		t.Fatalf("Ready = %+v, want False %s", ready, stargate.ReasonNoDatacenter)
	}
	rv := got.ResourceVersion
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := get(); got.ResourceVersion != rv {
		t.Errorf("an unchanged condition was written again")
	}

	if err := kube.Create(ctx, dcEast()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	got = get()
	in, ready = meta.FindStatusCondition(got.Status.Conditions, stargate.ConditionInDatacenter), meta.FindStatusCondition(got.Status.Conditions, stargate.ConditionReady)
	if in == nil || in.Status != metav1.ConditionTrue {
		t.Fatalf("InDatacenter = %+v, want True once the Datacenter is declared", in)
	}
	// Not provisioned yet: Ready is False for that reason now.
	if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason == stargate.ReasonNoDatacenter {
		t.Errorf("Ready = %+v, want False for a Server not yet provisioned", ready)
	}
}

func TestServersOfMapsADatacenterToTheServersOfItsNamespace(t *testing.T) {
	a, b, c := server("dc-east", nil), server("dc-east", nil), server("dc-west", nil)
	b.Name = "w2"
	b.Status.PodCIDR = "10.244.16.0/24"
	c.Name = "w3"
	kube := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(a, b, c).Build()
	got := ServersOf(kube, nil)(context.Background(), dcEast())
	if len(got) != 2 {
		t.Fatalf("requests %v, want dc-east/w1 and dc-east/w2", got)
	}
	got = ServersOf(kube, func(s *v1.Server) bool { return s.Status.PodCIDR == "" })(context.Background(), dcEast())
	if len(got) != 1 || got[0].Name != "w1" {
		t.Fatalf("requests %v, want dc-east/w1", got)
	}
}
