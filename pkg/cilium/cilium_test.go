package cilium_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stargate-k8s/stargate/pkg/cilium"
)

func newClient(t *testing.T, withCRD bool, objs ...client.Object) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "Node"}, meta.RESTScopeRoot)
	if withCRD {
		mapper.Add(cilium.CiliumNodeGVK, meta.RESTScopeRoot)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithRESTMapper(mapper).WithObjects(objs...).Build()
}

// The fake client lists unknown kinds as empty, so the real "no such
// kind" answers are checked here and end to end in test/routes
// (TestCiliumCRDMissingIsACondition against a real kube-apiserver).
func TestIsCRDMissing(t *testing.T) {
	gr := schema.GroupResource{Group: "cilium.io", Resource: "ciliumnodes"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"no kind match from the REST mapper", &meta.NoKindMatchError{GroupKind: cilium.CiliumNodeGVK.GroupKind(), SearchedVersions: []string{"v2"}}, true},
		{"404 on the collection", apierrors.NewNotFound(gr, ""), true},
		{"404 on one object", apierrors.NewNotFound(gr, "w1"), false},
		{"forbidden", apierrors.NewForbidden(gr, "", errors.New("no")), false},
	} {
		if got := cilium.IsCRDMissing(tc.err); got != tc.want {
			t.Errorf("%s: IsCRDMissing = %v, want %v", tc.name, got, tc.want)
		}
	}
}

var owner = map[string]string{"stargate.io/server": "w1", "stargate.io/datacenter": "dc-east"}

func TestSyncCiliumNodeCreatesThenRepairs(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, true)
	res, err := cilium.SyncCiliumNode(ctx, c, "w1", nil, "10.244.3.0/24", owner)
	if err != nil || !res.Created {
		t.Fatalf("create: %+v %v", res, err)
	}
	cns, err := cilium.List(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := cilium.PodCIDRsOf(cns["w1"]); !slices.Equal(got, []string{"10.244.3.0/24"}) {
		t.Fatalf("podCIDRs %v", got)
	}
	// Unchanged: no write.
	if res, err := cilium.SyncCiliumNode(ctx, c, "w1", cns["w1"], "10.244.3.0/24", owner); err != nil || res.Created || res.Patched {
		t.Fatalf("steady: %+v %v", res, err)
	}
	// Edited by someone: patched back.
	res, err = cilium.SyncCiliumNode(ctx, c, "w1", cns["w1"], "10.244.4.0/24", owner)
	if err != nil || !res.Patched || !slices.Equal(res.Observed, []string{"10.244.3.0/24"}) {
		t.Fatalf("repair: %+v %v", res, err)
	}
	cns, _ = cilium.List(ctx, c)
	if got := cilium.PodCIDRsOf(cns["w1"]); !slices.Equal(got, []string{"10.244.4.0/24"}) {
		t.Fatalf("podCIDRs after repair %v", got)
	}
	// Another Server's labels do not delete it.
	if err := cilium.DeleteCiliumNode(ctx, c, cns["w1"], map[string]string{"stargate.io/server": "w1", "stargate.io/datacenter": "dc-west"}); err != nil {
		t.Fatal(err)
	}
	if cns, _ = cilium.List(ctx, c); len(cns) != 1 {
		t.Fatalf("CiliumNode of dc-east/w1 deleted for dc-west/w1: %v", cns)
	}
	if err := cilium.DeleteCiliumNode(ctx, c, cns["w1"], owner); err != nil {
		t.Fatal(err)
	}
	if cns, _ = cilium.List(ctx, c); len(cns) != 0 {
		t.Fatalf("CiliumNode not deleted: %v", cns)
	}
}

func TestSyncNode(t *testing.T) {
	ctx := context.Background()
	empty := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "empty", Labels: owner}}
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "other", Labels: owner}, Spec: corev1.NodeSpec{PodCIDR: "10.98.0.0/24", PodCIDRs: []string{"10.98.0.0/24"}}}
	c := newClient(t, true, empty, other)

	if res, err := cilium.SyncNode(ctx, c, nil, "10.244.1.0/24", owner); err != nil || res.State != cilium.NodeAbsent {
		t.Fatalf("absent: %+v %v", res, err)
	}
	res, err := cilium.SyncNode(ctx, c, empty, "10.244.1.0/24", owner)
	if err != nil || !res.Wrote {
		t.Fatalf("fill: %+v %v", res, err)
	}
	var got corev1.Node
	if err := c.Get(ctx, client.ObjectKey{Name: "empty"}, &got); err != nil || got.Spec.PodCIDR != "10.244.1.0/24" || !slices.Equal(got.Spec.PodCIDRs, []string{"10.244.1.0/24"}) {
		t.Fatalf("node after fill %+v %v", got.Spec, err)
	}
	res, err = cilium.SyncNode(ctx, c, other, "10.244.2.0/24", owner)
	if !errors.Is(err, cilium.ErrNodeConflict) || res.Wrote {
		t.Fatalf("conflict: %+v %v", res, err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "other"}, &got); err != nil || got.Spec.PodCIDR != "10.98.0.0/24" {
		t.Fatalf("conflicting node changed: %+v", got.Spec)
	}
}

// A Server whose hostname is an AKS node's name must not rewrite that
// node's pod CIDR: neither its CiliumNode nor its Node is changed.
func TestServerNamedAfterForeignNodeCannotRewriteItsPodCIDR(t *testing.T) {
	ctx := context.Background()
	const aks = "aks-nodepool1-12345678-vmss000000"
	foreignNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: aks, Labels: map[string]string{"kubernetes.azure.com/cluster": "mc"}}}
	c := newClient(t, true, foreignNode)
	cn := cilium.NewCiliumNode()
	cn.SetName(aks)
	cn.SetLabels(map[string]string{"kubernetes.azure.com/cluster": "mc"})
	_ = unstructured.SetNestedStringSlice(cn.Object, []string{"10.244.0.0/24"}, "spec", "ipam", "podCIDRs")
	if err := c.Create(ctx, cn); err != nil {
		t.Fatal(err)
	}
	cns, err := cilium.List(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	// Another Server claiming the same name with forged labels of its own
	// datacenter does not own it either.
	for _, o := range []map[string]string{owner, {"stargate.io/server": aks, "stargate.io/datacenter": "dc-east"}} {
		res, err := cilium.SyncCiliumNode(ctx, c, aks, cns[aks], "10.244.99.0/24", o)
		if !errors.Is(err, cilium.ErrNotOwned) || res.Patched || res.Created {
			t.Fatalf("SyncCiliumNode of a foreign CiliumNode: %+v %v, want ErrNotOwned and no write", res, err)
		}
		nres, err := cilium.SyncNode(ctx, c, foreignNode, "10.244.99.0/24", o)
		if !errors.Is(err, cilium.ErrNotOwned) || nres.Wrote {
			t.Fatalf("SyncNode of a foreign Node: %+v %v, want ErrNotOwned and no write", nres, err)
		}
		if err := cilium.DeleteCiliumNode(ctx, c, cns[aks], o); err != nil {
			t.Fatal(err)
		}
	}
	cns, _ = cilium.List(ctx, c)
	if got := cilium.PodCIDRsOf(cns[aks]); !slices.Equal(got, []string{"10.244.0.0/24"}) {
		t.Errorf("the AKS node's CiliumNode now has podCIDRs %v (or is gone)", got)
	}
	var n corev1.Node
	if err := c.Get(ctx, client.ObjectKey{Name: aks}, &n); err != nil || n.Spec.PodCIDR != "" {
		t.Errorf("the AKS Node was changed: %+v %v", n.Spec, err)
	}
}
