// Package cilium gives a Stargate node its pod CIDR where Kubernetes and
// Cilium look for it: Node spec.podCIDR(s), set only while empty (a
// different existing value is reported, never overwritten), and the
// CiliumNode of the same name, spec.ipam.podCIDRs, created ahead of the
// Cilium agent when missing. It changes only Nodes and CiliumNodes that
// carry the Server's ownership labels: a Server whose hostname names
// someone else's node gets ErrNotOwned, and that node is left alone.
package cilium

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// CiliumNodeGVK is cilium.io/v2 CiliumNode.
var CiliumNodeGVK = schema.GroupVersionKind{Group: "cilium.io", Version: "v2", Kind: "CiliumNode"}

// ErrCRDMissing means the cluster does not serve CiliumNode.
var ErrCRDMissing = errors.New("the CiliumNode CRD (ciliumnodes.cilium.io/v2) is not installed")

// ErrNodeConflict means the Node already has another pod CIDR.
var ErrNodeConflict = errors.New("node pod CIDR conflict")

// ErrNotOwned means a Node or CiliumNode of the wanted name exists but
// does not carry the Server's ownership labels: it belongs to another
// machine (an AKS node, another Server) and is not changed.
var ErrNotOwned = errors.New("not owned by this Server")

// Owned says whether an object's labels hold every one of owner's.
func Owned(labels, owner map[string]string) bool {
	if len(owner) == 0 {
		return false
	}
	for k, v := range owner {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func notOwned(kind, name string, labels, owner map[string]string) error {
	var want []string
	for k, v := range owner {
		want = append(want, k+"="+v)
	}
	slices.Sort(want)
	holder := "unlabelled"
	if s, d := labels[stargate.LabelServer], labels[stargate.LabelDatacenter]; s != "" || d != "" {
		holder = "labelled for Server " + d + "/" + s
	}
	return fmt.Errorf("%w: %s %s exists (%s) without %v; another machine uses this name, so Stargate does not change it: rename spec.hostname",
		ErrNotOwned, kind, name, holder, want)
}

// NodeState is what SyncNode found.
type NodeState string

const (
	// NodeAbsent: the Node has not registered yet.
	NodeAbsent NodeState = "Absent"
	// NodeSet: the Node carries the CIDR (now or already).
	NodeSet NodeState = "Set"
)

// NodeResult says what SyncNode saw and did.
type NodeResult struct {
	State NodeState
	// Observed are the Node's pod CIDRs as left.
	Observed []string
	// Wrote is true when the Node was patched.
	Wrote bool
}

// SyncNode sets spec.podCIDR and spec.podCIDRs of the named Node when they
// are empty. The API server refuses to change them once set, and another
// value means someone else allocated: that is ErrNodeConflict. A Node
// without every label of owner is not touched: ErrNotOwned.
func SyncNode(ctx context.Context, c client.Client, node *corev1.Node, cidr string, owner map[string]string) (NodeResult, error) {
	if node == nil {
		return NodeResult{State: NodeAbsent}, nil
	}
	if !Owned(node.Labels, owner) {
		return NodeResult{}, notOwned("Node", node.Name, node.Labels, owner)
	}
	have := node.Spec.PodCIDRs
	if len(have) == 0 && node.Spec.PodCIDR != "" {
		have = []string{node.Spec.PodCIDR}
	}
	if len(have) > 0 {
		if slices.Contains(have, cidr) {
			return NodeResult{State: NodeSet, Observed: have}, nil
		}
		return NodeResult{State: NodeSet, Observed: have}, fmt.Errorf("%w: Node %s has pod CIDR %v, the Server wants %s; not overwriting", ErrNodeConflict, node.Name, have, cidr)
	}
	patch := fmt.Appendf(nil, `{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, cidr, cidr)
	n := node.DeepCopy()
	if err := c.Patch(ctx, n, client.RawPatch(types.StrategicMergePatchType, patch)); err != nil {
		return NodeResult{State: NodeSet}, fmt.Errorf("patch Node %s pod CIDR: %w", node.Name, err)
	}
	return NodeResult{State: NodeSet, Observed: []string{cidr}, Wrote: true}, nil
}

// PodCIDRsOf returns spec.ipam.podCIDRs of a CiliumNode.
func PodCIDRsOf(cn *unstructured.Unstructured) []string {
	out, _, _ := unstructured.NestedStringSlice(cn.Object, "spec", "ipam", "podCIDRs")
	return out
}

// CiliumNodeResult says what SyncCiliumNode saw and did.
type CiliumNodeResult struct {
	// Observed are spec.ipam.podCIDRs before the write.
	Observed []string
	Created  bool
	Patched  bool
}

// List returns every CiliumNode by name, or ErrCRDMissing.
func List(ctx context.Context, r client.Reader) (map[string]*unstructured.Unstructured, error) {
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(CiliumNodeGVK.GroupVersion().WithKind("CiliumNodeList"))
	if err := r.List(ctx, l); err != nil {
		if IsCRDMissing(err) {
			return nil, ErrCRDMissing
		}
		return nil, fmt.Errorf("list CiliumNodes: %w", err)
	}
	out := make(map[string]*unstructured.Unstructured, len(l.Items))
	for i := range l.Items {
		out[l.Items[i].GetName()] = &l.Items[i]
	}
	return out, nil
}

// IsCRDMissing says whether err means the CiliumNode kind is not served.
func IsCRDMissing(err error) bool {
	return meta.IsNoMatchError(err) || errors.Is(err, ErrCRDMissing) || (apierrors.IsNotFound(err) && isNotFoundForKind(err))
}

func isNotFoundForKind(err error) bool {
	var se apierrors.APIStatus
	if !errors.As(err, &se) || se.Status().Details == nil {
		return false
	}
	// A 404 on the collection (no name) means the resource itself is not served.
	return se.Status().Details.Name == ""
}

// SyncCiliumNode makes spec.ipam.podCIDRs of the CiliumNode called name
// equal [cidr]: it creates the CiliumNode (with labels, the Server's
// ownership labels) when absent, so the agent finds its CIDR when it
// starts, or patches it when it carries those labels (ErrNotOwned when
// not). have is the current object, nil when absent.
func SyncCiliumNode(ctx context.Context, c client.Client, name string, have *unstructured.Unstructured, cidr string, labels map[string]string) (CiliumNodeResult, error) {
	if have == nil {
		cn := &unstructured.Unstructured{}
		cn.SetGroupVersionKind(CiliumNodeGVK)
		cn.SetName(name)
		cn.SetLabels(labels)
		_ = unstructured.SetNestedStringSlice(cn.Object, []string{cidr}, "spec", "ipam", "podCIDRs")
		if err := c.Create(ctx, cn); err != nil {
			if IsCRDMissing(err) {
				return CiliumNodeResult{}, ErrCRDMissing
			}
			return CiliumNodeResult{}, fmt.Errorf("create CiliumNode %s: %w", name, err)
		}
		return CiliumNodeResult{Created: true}, nil
	}
	res := CiliumNodeResult{Observed: PodCIDRsOf(have)}
	if !Owned(have.GetLabels(), labels) {
		return res, notOwned("CiliumNode", name, have.GetLabels(), labels)
	}
	if slices.Equal(res.Observed, []string{cidr}) {
		return res, nil
	}
	cn := have.DeepCopy()
	patch := fmt.Appendf(nil, `{"spec":{"ipam":{"podCIDRs":[%q]}}}`, cidr)
	if err := c.Patch(ctx, cn, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return res, fmt.Errorf("patch CiliumNode %s: %w", name, err)
	}
	res.Patched = true
	return res, nil
}

// DeleteCiliumNode deletes a CiliumNode Stargate created for the Server
// (it carries every label of owner); CiliumNodes of others are left alone.
func DeleteCiliumNode(ctx context.Context, c client.Client, have *unstructured.Unstructured, owner map[string]string) error {
	if have == nil || !Owned(have.GetLabels(), owner) {
		return nil
	}
	if err := c.Delete(ctx, have); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete CiliumNode %s: %w", have.GetName(), err)
	}
	return nil
}

// NewCiliumNode is an empty CiliumNode, e.g. for watches.
func NewCiliumNode() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(CiliumNodeGVK)
	return u
}
