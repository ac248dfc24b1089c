package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// The fixture namespace dc-it has no Datacenter: its Servers (10.50.1.x,
// some without a router) stay admitted as in a namespace that is no
// datacenter. The tests here make namespaces of their own.

var datacenterType = metav1.TypeMeta{APIVersion: "stargate.io/v1alpha1", Kind: "Datacenter"}

// dcRouter is the router of every test Datacenter.
const dcRouter = "100.64.0.1"

// newDatacenter is a Datacenter for namespace ns with the worker subnet
// NET.0/24 (NET is three octets), its gateway NET.1 and the pod CIDR
// block 10.244.128.0/17.
func newDatacenter(name, ns, net string) *v1alpha1.Datacenter {
	return &v1alpha1.Datacenter{
		TypeMeta:   datacenterType,
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.DatacenterSpec{
			Namespace:    ns,
			WorkerSubnet: net + ".0/24",
			Router:       v1alpha1.DatacenterRouter{IP: dcRouter},
			AgentGateway: net + ".1",
			PodCIDRBlock: "10.244.128.0/17",
		},
	}
}

// serverIn is a valid Server in namespace ns, reached through dcRouter.
func serverIn(ns, name, ip string) *v1alpha1.Server {
	s := server(name, ip)
	s.Namespace = ns
	s.Spec.RouterIP = dcRouter
	return s
}

// makeDatacenter creates namespace ns and, as the admin with kubectl, a
// Datacenter of the same name for it (see newDatacenter), and waits until
// stargate-apiserver's admission knows it. Both are deleted after the test.
func makeDatacenter(t *testing.T, ns, net string) *v1alpha1.Datacenter {
	t.Helper()
	ctx := testContext(t)
	kube := world.ControlPlane.Kube
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		world.Kubectl.Run(context.Background(), "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
	})
	d := newDatacenter(ns, ns, net)
	kubectlIn(t, toJSON(t, d), "create", "-f", "-")
	t.Cleanup(func() {
		world.Kubectl.Run(context.Background(), "delete", "datacenter", d.Name, "--ignore-not-found")
	})
	// The admission plugin reads Datacenters from an informer: a server
	// dry-run outside the subnet is refused once it has seen this one.
	probe := serverIn(ns, "probe", "192.0.2.10")
	eventually(t, 30*time.Second, func() error {
		_, err := client.StargateV1alpha1().Servers(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "Datacenter "+d.Name) {
			return fmt.Errorf("a server outside Datacenter %s is not refused yet: %v", d.Name, err)
		}
		return nil
	})
	return d
}

func TestGetDatacentersShowsColumns(t *testing.T) {
	d := makeDatacenter(t, "dc-it-columns", "10.61.1")

	r := kubectl(t, "get", "datacenters")
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	want := []string{"NAME", "NAMESPACE", "WORKER-SUBNET", "ROUTER", "AGE"}
	if got := strings.Fields(lines[0]); !slices.Equal(got, want) {
		t.Fatalf("header = %q, want %q\n%s", got, want, r)
	}
	row := func(out string) []string {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == d.Name {
				return f
			}
		}
		t.Fatalf("no row for %s\n%s", d.Name, out)
		return nil
	}
	if got, want := row(r.Stdout)[:4], []string{d.Name, "dc-it-columns", "10.61.1.0/24", dcRouter}; !slices.Equal(got, want) {
		t.Errorf("row = %q, want %q\n%s", got, want, r)
	}

	// The short name, the wide columns and the status subresource.
	kubectl(t, "patch", "dc", d.Name, "--subresource=status", "--type=merge", "-p",
		`{"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"True","reason":"NetworkDeclared","message":"ok","lastTransitionTime":"2026-12-01T00:00:00Z"}]}}`)
	r = kubectl(t, "get", "dc", d.Name, "-o", "wide")
	if got, want := row(r.Stdout), []string{d.Name, "dc-it-columns", "10.61.1.0/24", dcRouter, "10.61.1.1", "10.244.128.0/17", "True"}; len(got) != 8 || !slices.Equal(got[:7], want) {
		t.Errorf("wide row = %q, want %q then AGE\n%s", got, want, r)
	}
	// A write of the main resource keeps the status.
	kubectl(t, "patch", "dc", d.Name, "--type=merge", "-p", `{"spec":{"podCIDRBlock":"10.244.64.0/18"},"status":{"conditions":[]}}`)
	got, err := client.StargateV1alpha1().Datacenters().Get(testContext(t), d.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.PodCIDRBlock != "10.244.64.0/18" || len(got.Status.Conditions) != 1 || got.Generation != 2 {
		t.Errorf("after a spec patch: podCIDRBlock %q, %d conditions, generation %d; want 10.244.64.0/18, the Ready condition kept, 2",
			got.Spec.PodCIDRBlock, len(got.Status.Conditions), got.Generation)
	}

	if r := kubectl(t, "get", "stargate", "-A"); !strings.Contains(r.Stdout, "datacenter.stargate.io/"+d.Name) {
		t.Errorf("`kubectl get stargate -A` lacks the Datacenter\n%s", r)
	}
}

// Servers in a datacenter stay inside the network its admin declared;
// kubectl shows which field is outside and why.
func TestServerOutsideItsDatacenterNetworkIsRejected(t *testing.T) {
	const ns = "dc-it-network"
	d := makeDatacenter(t, ns, "10.62.1")
	createServer(t, serverIn(ns, "inside", "10.62.1.11"))

	cases := []struct {
		name   string
		server func() *v1alpha1.Server
		want   string
	}{
		{"address outside the worker subnet", func() *v1alpha1.Server { return serverIn(ns, "outside", "10.9.9.9") },
			`spec.ipAddress: Invalid value: "10.9.9.9": not inside the worker subnet 10.62.1.0/24 of Datacenter ` + d.Name},
		{"address in the AKS VNet", func() *v1alpha1.Server { return serverIn(ns, "in-vnet", "10.224.0.4") },
			`spec.ipAddress: Invalid value: "10.224.0.4": not inside the worker subnet`},
		{"a router of its own", func() *v1alpha1.Server {
			s := serverIn(ns, "own-router", "10.62.1.12")
			s.Spec.RouterIP = "203.0.113.66"
			return s
		}, `spec.routerIP: Invalid value: "203.0.113.66": must be ` + dcRouter + `, the router of Datacenter ` + d.Name},
		{"no router", func() *v1alpha1.Server {
			s := serverIn(ns, "no-router", "10.62.1.13")
			s.Spec.RouterIP = ""
			return s
		}, `spec.routerIP: Required value`},
		{"pod CIDR hijacking half the Internet", func() *v1alpha1.Server {
			s := serverIn(ns, "hijack", "10.62.1.14")
			s.Spec.PodCIDR = "128.0.0.0/1"
			return s
		}, `spec.podCIDR: Invalid value: "128.0.0.0/1": not inside the pod CIDR block 10.244.128.0/17 of Datacenter ` + d.Name},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.server()
			r := world.Kubectl.RunWithInput(testContext(t), toJSON(t, s), "create", "-f", "-")
			mustFail(t, r, tc.want)
			if _, err := client.StargateV1alpha1().Servers(ns).Get(testContext(t), s.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("server %s exists after its rejection (%v)", s.Name, err)
			}
		})
	}

	t.Run("update moving a server out", func(t *testing.T) {
		r := world.Kubectl.Run(testContext(t), "patch", "server", "inside", "-n", ns, "--type=merge", "-p", `{"spec":{"ipAddress":"10.9.9.9"}}`)
		mustFail(t, r, `spec.ipAddress: Invalid value: "10.9.9.9": not inside the worker subnet 10.62.1.0/24`)
	})
}

// The attack: an operator given a datacenter namespace (stargate-edit
// bound there) declares a datacenter of their own, or widens theirs, to
// point Servers at addresses the admin never gave them. Datacenters are
// cluster-scoped, so no role bound in a namespace reaches them.
func TestDatacenterOperatorCannotDeclareADatacenter(t *testing.T) {
	const ns = "dc-it-operator"
	d := makeDatacenter(t, ns, "10.63.1")
	kubectl(t, "apply", "-f", filepath.Join(world.RepoRoot, "artifacts", "rbac-users.yaml"))
	bindClusterRole(t, ns, "dc-operator", "stargate-edit")
	u, err := world.ControlPlane.AddUser("dc-operator")
	if err != nil {
		t.Fatal(err)
	}
	op := world.KubectlFor(u.Kubeconfig)
	ctx := testContext(t)
	eventually(t, 30*time.Second, func() error {
		if r := op.Run(ctx, "auth", "can-i", "create", "servers.stargate.io", "-n", ns); strings.TrimSpace(r.Stdout) != "yes" {
			return fmt.Errorf("the operator's binding is not in effect yet:\n%s", r)
		}
		return nil
	})

	t.Run("declare a datacenter for another namespace", func(t *testing.T) {
		mine := newDatacenter("dc-it-operators-own", "dc-it-operators-own", "10.64.1")
		r := op.RunWithInput(ctx, toJSON(t, mine), "create", "-f", "-")
		mustFail(t, r, "Forbidden", `cannot create resource "datacenters" in API group "stargate.io" at the cluster scope`)
	})
	t.Run("declare a second datacenter for their own namespace", func(t *testing.T) {
		wide := newDatacenter("dc-it-operator-wide", ns, "10.63.1")
		wide.Spec.WorkerSubnet, wide.Spec.AgentGateway = "10.0.0.0/8", "10.63.1.1"
		r := op.RunWithInput(ctx, toJSON(t, wide), "create", "-f", "-")
		mustFail(t, r, "Forbidden", `cannot create resource "datacenters"`)
	})
	t.Run("widen their datacenter", func(t *testing.T) {
		r := op.Run(ctx, "patch", "datacenter", d.Name, "--type=merge", "-p", `{"spec":{"workerSubnet":"10.0.0.0/8"}}`)
		mustFail(t, r, "Forbidden", `resource "datacenters" in API group "stargate.io" at the cluster scope`)
	})
	t.Run("delete their datacenter", func(t *testing.T) {
		r := op.Run(ctx, "delete", "datacenter", d.Name)
		mustFail(t, r, "Forbidden", `resource "datacenters" in API group "stargate.io" at the cluster scope`)
	})
	t.Run("servers outside the declared network", func(t *testing.T) {
		s := serverIn(ns, "elsewhere", "198.51.100.7")
		r := op.RunWithInput(ctx, toJSON(t, s), "create", "-f", "-")
		mustFail(t, r, `spec.ipAddress: Invalid value: "198.51.100.7": not inside the worker subnet 10.63.1.0/24 of Datacenter `+d.Name)
	})
	t.Run("servers inside it are theirs to make", func(t *testing.T) {
		s := serverIn(ns, "inside", "10.63.1.11")
		mustSucceed(t, op.RunWithInput(ctx, toJSON(t, s), "create", "-f", "-"))
	})

	got, err := client.StargateV1alpha1().Datacenters().Get(ctx, d.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the admin's Datacenter is gone: %v", err)
	}
	if got.Spec.WorkerSubnet != d.Spec.WorkerSubnet {
		t.Errorf("workerSubnet = %s after the attempts, want %s", got.Spec.WorkerSubnet, d.Spec.WorkerSubnet)
	}
	list, err := client.StargateV1alpha1().Datacenters().List(ctx, metav1.ListOptions{FieldSelector: "spec.namespace=" + ns})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != d.Name {
		t.Errorf("Datacenters of namespace %s: %d, want only %s", ns, len(list.Items), d.Name)
	}
}

func TestSecondDatacenterForTheSameNamespaceIsRejected(t *testing.T) {
	const ns = "dc-it-twice"
	d := makeDatacenter(t, ns, "10.65.1")
	second := newDatacenter("dc-it-twice-again", ns, "10.66.1")
	r := world.Kubectl.RunWithInput(testContext(t), toJSON(t, second), "create", "-f", "-")
	mustFail(t, r, fmt.Sprintf(`spec.namespace: Invalid value: %q: namespace %s is already the datacenter of Datacenter %s`, ns, ns, d.Name))
	if r := world.Kubectl.Run(testContext(t), "get", "datacenter", second.Name); r.Err == nil {
		t.Errorf("the second Datacenter exists:\n%s", r)
	}
}

// Every invalid Datacenter is refused naming the field.
func TestDatacenterValidationRejectsInvalidInput(t *testing.T) {
	d := makeDatacenter(t, "dc-it-invalid", "10.67.1")
	cases := []struct {
		name   string
		mutate func(*v1alpha1.Datacenter)
		want   string
	}{
		{"worker subnet not canonical", func(d *v1alpha1.Datacenter) { d.Spec.WorkerSubnet = "10.68.1.7/24" }, "spec.workerSubnet: Invalid value"},
		{"gateway outside the worker subnet", func(d *v1alpha1.Datacenter) { d.Spec.AgentGateway = "10.67.1.1" }, `spec.agentGateway: Invalid value: "10.67.1.1": must be inside spec.workerSubnet 10.68.1.0/24`},
		{"pod CIDR block overlapping the worker subnet", func(d *v1alpha1.Datacenter) { d.Spec.PodCIDRBlock = "10.68.0.0/16" }, "spec.podCIDRBlock: Invalid value"},
		{"router missing", func(d *v1alpha1.Datacenter) { d.Spec.Router.IP = "" }, "spec.router.ip: Required value"},
		{"namespace not a DNS label", func(d *v1alpha1.Datacenter) { d.Spec.Namespace = "dc.other" }, "spec.namespace: Invalid value"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := newDatacenter(fmt.Sprintf("dc-it-invalid-%d", i), fmt.Sprintf("dc-it-invalid-%d", i), "10.68.1")
			tc.mutate(bad)
			r := world.Kubectl.RunWithInput(testContext(t), toJSON(t, bad), "create", "-f", "-")
			if r.Err == nil {
				world.Kubectl.Run(testContext(t), "delete", "datacenter", bad.Name)
			}
			mustFail(t, r, tc.want)
		})
	}
	t.Run("namespace changed", func(t *testing.T) {
		r := world.Kubectl.Run(testContext(t), "patch", "datacenter", d.Name, "--type=merge", "-p", `{"spec":{"namespace":"dc-elsewhere"}}`)
		mustFail(t, r, `spec.namespace: Invalid value: "dc-elsewhere": field is immutable`)
	})
}

// createDatacenterFails creates d as the admin and expects the refusal to
// say each of want; a Datacenter that was admitted after all is deleted.
func createDatacenterFails(t *testing.T, d *v1alpha1.Datacenter, want ...string) {
	t.Helper()
	r := world.Kubectl.RunWithInput(testContext(t), toJSON(t, d), "create", "-f", "-")
	if r.Err == nil {
		world.Kubectl.Run(testContext(t), "delete", "datacenter", d.Name)
	}
	mustFail(t, r, want...)
}

// An admin's mistake (or a stolen datacenter-admin binding) declares a
// datacenter inside the AKS VNet: Stargate would then route the VNet's
// addresses to the DC router, hijacking AKS nodes' traffic. stargate-
// apiserver knows the VNet (--cloud-network-cidr, 10.224.0.0/12 by
// default) and refuses it, naming the field, the value and the VNet; so
// for the Service range and the pod pool, and for a router in them.
func TestDatacenterOverlappingAKSVNetIsRejected(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*v1alpha1.Datacenter)
		want   string
	}{
		{"worker subnet in the AKS VNet", func(d *v1alpha1.Datacenter) {
			d.Spec.WorkerSubnet, d.Spec.AgentGateway = "10.224.8.0/24", "10.224.8.1"
		}, `spec.workerSubnet: Invalid value: "10.224.8.0/24": overlaps the cloud network 10.224.0.0/12 (the AKS VNet)`},
		{"worker subnet the whole AKS VNet", func(d *v1alpha1.Datacenter) {
			d.Spec.WorkerSubnet, d.Spec.AgentGateway = "10.224.0.0/12", "10.224.0.1"
		}, `spec.workerSubnet: Invalid value: "10.224.0.0/12": overlaps the cloud network 10.224.0.0/12`},
		{"worker subnet in the Service range", func(d *v1alpha1.Datacenter) {
			d.Spec.WorkerSubnet, d.Spec.AgentGateway = "10.0.0.0/24", "10.0.0.2"
		}, `spec.workerSubnet: Invalid value: "10.0.0.0/24": overlaps the Service range 10.0.0.0/16`},
		{"worker subnet in the pod pool", func(d *v1alpha1.Datacenter) {
			d.Spec.WorkerSubnet, d.Spec.AgentGateway, d.Spec.PodCIDRBlock = "10.244.9.0/24", "10.244.9.1", ""
		}, `spec.workerSubnet: Invalid value: "10.244.9.0/24": overlaps the pod CIDR pool 10.244.0.0/16`},
		{"router in the AKS VNet", func(d *v1alpha1.Datacenter) { d.Spec.Router.IP = "10.224.0.4" },
			`spec.router.ip: Invalid value: "10.224.0.4": must not lie in the cloud network 10.224.0.0/12`},
		{"pod CIDR block outside the pod pool", func(d *v1alpha1.Datacenter) { d.Spec.PodCIDRBlock = "10.225.0.0/20" },
			`spec.podCIDRBlock: Invalid value: "10.225.0.0/20": must lie inside the pod CIDR pool 10.244.0.0/16`},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := fmt.Sprintf("dc-it-vnet-%d", i)
			bad := newDatacenter(ns, ns, "10.69.1")
			tc.mutate(bad)
			createDatacenterFails(t, bad, tc.want)
		})
	}

	// Moving a declared datacenter into the VNet is refused the same way.
	d := makeDatacenter(t, "dc-it-vnet-move", "10.69.2")
	r := world.Kubectl.Run(testContext(t), "patch", "datacenter", d.Name, "--type=merge", "-p",
		`{"spec":{"workerSubnet":"10.230.0.0/24","agentGateway":"10.230.0.1"}}`)
	mustFail(t, r, `spec.workerSubnet: Invalid value: "10.230.0.0/24": overlaps the cloud network 10.224.0.0/12`)
}

// Two datacenters cannot claim the same worker subnet (nor overlapping
// ones): Stargate would route one datacenter's addresses to the other's
// router, and a Server of one could take an address of the other.
func TestTwoDatacentersCannotShareASubnet(t *testing.T) {
	first := makeDatacenter(t, "dc-it-share-a", "10.70.1")
	same := newDatacenter("dc-it-share-b", "dc-it-share-b", "10.70.1")
	createDatacenterFails(t, same, fmt.Sprintf(`spec.workerSubnet: Invalid value: "10.70.1.0/24": overlaps the worker subnet 10.70.1.0/24 of Datacenter %s`, first.Name))

	wider := newDatacenter("dc-it-share-c", "dc-it-share-c", "10.70.1")
	wider.Spec.WorkerSubnet, wider.Spec.AgentGateway = "10.70.0.0/16", "10.70.2.1"
	createDatacenterFails(t, wider, fmt.Sprintf(`spec.workerSubnet: Invalid value: "10.70.0.0/16": overlaps the worker subnet 10.70.1.0/24 of Datacenter %s`, first.Name))

	// A datacenter of its own subnet is fine, but cannot move onto the
	// first one's.
	second := makeDatacenter(t, "dc-it-share-d", "10.70.2")
	r := world.Kubectl.Run(testContext(t), "patch", "datacenter", second.Name, "--type=merge", "-p",
		`{"spec":{"workerSubnet":"10.70.1.0/24","agentGateway":"10.70.1.1"}}`)
	mustFail(t, r, fmt.Sprintf(`overlaps the worker subnet 10.70.1.0/24 of Datacenter %s`, first.Name))
}

// A datacenter operator pins a Server's pod CIDR outside the pod pool,
// 128.0.0.0/1 say, in a namespace with or without a Datacenter: Stargate
// would write a UDR and Tailscale route for half the internet to the
// Server. Refused at admission, naming the field, the value and the pool.
func TestPinnedPodCIDROutsidePoolIsRejected(t *testing.T) {
	d := makeDatacenter(t, "dc-it-pin", "10.71.1")
	for _, ns := range []string{d.Spec.Namespace, "dc-it"} {
		for _, pin := range []string{"128.0.0.0/1", "10.0.0.0/24", "10.245.0.0/24"} {
			s := serverIn(ns, "pinned", "10.71.1.20")
			s.Spec.PodCIDR = pin
			r := world.Kubectl.RunWithInput(testContext(t), toJSON(t, s), "create", "-f", "-")
			if r.Err == nil {
				world.Kubectl.Run(testContext(t), "delete", "server", "-n", ns, s.Name)
			}
			mustFail(t, r, fmt.Sprintf(`spec.podCIDR: Invalid value: %q: not inside the pod CIDR pool 10.244.0.0/16`, pin))
		}
	}
	// Inside the pool (and the datacenter's block) it is admitted.
	s := serverIn(d.Spec.Namespace, "pinned-ok", "10.71.1.21")
	s.Spec.PodCIDR = "10.244.200.0/24"
	if r := world.Kubectl.RunWithInput(testContext(t), toJSON(t, s), "create", "-f", "-"); r.Err != nil {
		t.Fatalf("a pin inside the pool was refused:\n%s", r)
	}
	world.Kubectl.Run(testContext(t), "delete", "server", "-n", s.Namespace, s.Name)
}
