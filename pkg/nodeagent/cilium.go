package nodeagent

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// CiliumNodes is Cilium's per-node resource; spec.ipam.podCIDRs holds the
// pod CIDRs Cilium uses on the node. The agent reads it with the dynamic
// client rather than Cilium's types, which would weigh on a small binary.
var CiliumNodes = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnodes"}

// CiliumView is what the agent knows of its CiliumNode.
type CiliumView struct {
	// Synced is false until the CiliumNode informer has listed once.
	Synced bool
	// Found is false when there is no CiliumNode of the node's name.
	Found    bool
	PodCIDRs []string
}

// ciliumPodCIDRs reads spec.ipam.podCIDRs.
func ciliumPodCIDRs(u *unstructured.Unstructured) []string {
	cidrs, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "ipam", "podCIDRs")
	return cidrs
}

// slimCiliumNode keeps only what the agent reads of a CiliumNode, so the
// informer's cache stays small.
func slimCiliumNode(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	slim := &unstructured.Unstructured{Object: map[string]any{}}
	slim.SetAPIVersion(u.GetAPIVersion())
	slim.SetKind(u.GetKind())
	slim.SetName(u.GetName())
	slim.SetUID(u.GetUID())
	slim.SetResourceVersion(u.GetResourceVersion())
	if cidrs := ciliumPodCIDRs(u); cidrs != nil {
		_ = unstructured.SetNestedStringSlice(slim.Object, cidrs, "spec", "ipam", "podCIDRs")
	}
	return slim, nil
}

// ciliumCondition compares the CiliumNode's pod CIDRs with the Server's.
func ciliumCondition(node, server, podCIDR string, c CiliumView) (metav1.ConditionStatus, string, string) {
	switch {
	case !c.Synced:
		return metav1.ConditionUnknown, stargate.ReasonCiliumUnavailable,
			fmt.Sprintf("CiliumNode %s cannot be read yet (is Cilium's CiliumNode CRD installed, and may the agent watch it?)", node)
	case podCIDR == "":
		return metav1.ConditionUnknown, stargate.ReasonPodCIDRNotAlloc,
			fmt.Sprintf("Server %s has no status.podCIDR yet", server)
	case !c.Found:
		return metav1.ConditionFalse, stargate.ReasonCiliumNodeNotFound,
			fmt.Sprintf("there is no CiliumNode %s; Server %s status.podCIDR is %s", node, server, podCIDR)
	case len(c.PodCIDRs) == 0:
		return metav1.ConditionFalse, stargate.ReasonCiliumNodeNoPodCIDR,
			fmt.Sprintf("CiliumNode %s has no spec.ipam.podCIDRs; Server %s status.podCIDR is %s", node, server, podCIDR)
	}
	want, err := netip.ParsePrefix(podCIDR)
	if err == nil && slices.ContainsFunc(c.PodCIDRs, func(s string) bool {
		p, err := netip.ParsePrefix(s)
		return err == nil && p.Masked() == want.Masked()
	}) {
		return metav1.ConditionTrue, stargate.ReasonPodCIDRMatches,
			fmt.Sprintf("CiliumNode %s holds %s, the pod CIDR of Server %s", node, podCIDR, server)
	}
	return metav1.ConditionFalse, stargate.ReasonPodCIDRMismatch,
		fmt.Sprintf("CiliumNode %s spec.ipam.podCIDRs is [%s] but Server %s status.podCIDR is %s",
			node, strings.Join(c.PodCIDRs, ", "), server, podCIDR)
}
