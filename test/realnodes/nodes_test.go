package realnodes

import (
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/test/framework/nodes"
)

func TestNodesAreReadyWithRealKubeletAndContainerd(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	_, clusterNet, _ := net.ParseCIDR(nodes.ClusterCIDR)
	seen := map[string]string{}
	for _, name := range nodeNames {
		node, err := cp.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ready := false
		for _, c := range node.Status.Conditions {
			ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		}
		if !ready {
			t.Errorf("node %s is not Ready: %v", name, node.Status.Conditions)
		}
		info := node.Status.NodeInfo
		if info.KubeletVersion != "v1.37.2" {
			t.Errorf("node %s: kubelet version %q, want v1.37.2", name, info.KubeletVersion)
		}
		if info.ContainerRuntimeVersion != "containerd://2.4.2" {
			t.Errorf("node %s: container runtime %q, want containerd://2.4.2", name, info.ContainerRuntimeVersion)
		}
		want := cluster.Node(name).IP
		var internal string
		for _, a := range node.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				internal = a.Address
			}
		}
		if internal != want {
			t.Errorf("node %s: InternalIP %q, want %s", name, internal, want)
		}
		ip, cidr, err := net.ParseCIDR(node.Spec.PodCIDR)
		if err != nil || !clusterNet.Contains(ip) || cidr.String() != node.Spec.PodCIDR {
			t.Errorf("node %s: pod CIDR %q is not a CIDR out of %s", name, node.Spec.PodCIDR, nodes.ClusterCIDR)
		}
		if ones, _ := cidr.Mask.Size(); ones != nodes.PodCIDRMaskSize {
			t.Errorf("node %s: pod CIDR %s is not a /%d", name, node.Spec.PodCIDR, nodes.PodCIDRMaskSize)
		}
		if other, dup := seen[node.Spec.PodCIDR]; dup {
			t.Errorf("nodes %s and %s share pod CIDR %s", other, name, node.Spec.PodCIDR)
		}
		seen[node.Spec.PodCIDR] = name
		t.Logf("%s Ready: %s, %s, InternalIP %s, pod CIDR %s, RSS of its processes %d MiB", name, info.KubeletVersion,
			info.ContainerRuntimeVersion, internal, node.Spec.PodCIDR, cluster.Node(name).RSS()>>20)
	}
}
