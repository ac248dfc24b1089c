package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

func TestGetServersShowsColumns(t *testing.T) {
	r := kubectl(t, "get", "servers", "-n", dc)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	want := []string{"NAME", "IP", "PHASE", "NODE", "POD-CIDR", "ROUTES", "AGE"}
	if got := strings.Fields(lines[0]); !slices.Equal(got, want) {
		t.Fatalf("header = %q, want %q\n%s", got, want, r)
	}
	for _, line := range lines[1:] {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "worker-1" {
			if f[1] != "10.50.1.11" {
				t.Errorf("IP column of worker-1 = %q, want 10.50.1.11\n%s", f[1], r)
			}
			if len(f) != len(want) {
				t.Errorf("row of worker-1 has %d cells, want %d (empty cells should print as <none>)\n%s", len(f), len(want), r)
			}
			return
		}
	}
	t.Fatalf("no row for worker-1\n%s", r)
}

func TestGetCategoryStargateListsAllKinds(t *testing.T) {
	createServer(t, server("category-1", "10.50.1.21"))
	op := repave(t, "category-1", `{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","reason":"category test"}`)

	r := kubectl(t, "get", "stargate", "-A")
	for _, want := range []string{
		"server.stargate.io/category-1",
		"provisioningprofile.stargate.io/default",
		"operation.stargate.io/" + op.Name,
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("`kubectl get stargate -A` lacks %s\n%s", want, r)
		}
	}
}

func TestDescribeServerShowsConditions(t *testing.T) {
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	s := getServer(t, "worker-1")
	updateStatus(t, "worker-1", func(st *v1alpha1.ServerStatus) {
		st.Phase = v1alpha1.ServerFailed
		st.ObservedGeneration = s.Generation
		st.Conditions = []metav1.Condition{
			{Type: "Provisioned", Status: metav1.ConditionTrue, Reason: "RepaveSucceeded",
				Message: "bootstrap script finished", LastTransitionTime: now, ObservedGeneration: s.Generation},
			{Type: "RoutesReady", Status: metav1.ConditionFalse, Reason: "AzureRouteMissing",
				Message: "route table has no route to 10.244.7.0/24", LastTransitionTime: now, ObservedGeneration: s.Generation},
			{Type: "Ready", Status: metav1.ConditionFalse, Reason: "RoutesNotReady",
				Message: "pod traffic to worker-1 cannot be routed yet", LastTransitionTime: now, ObservedGeneration: s.Generation},
		}
	})

	r := kubectl(t, "describe", "server", "worker-1", "-n", dc)
	out := r.Stdout
	for _, want := range []string{
		"Conditions:",
		"Reason:", "RepaveSucceeded", "AzureRouteMissing", "RoutesNotReady",
		"Message:", "route table has no route to 10.244.7.0/24", "pod traffic to worker-1 cannot be routed yet",
		"Phase:", "Failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q\n%s", want, r)
		}
	}
}

func TestRepave(t *testing.T) {
	const req = `{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","reason":"disk replaced"}`
	var first *v1alpha1.Operation

	// Operations of earlier runs (-count) would hold worker-1; without a
	// controller nothing finishes them.
	err := client.StargateV1alpha1().Operations(dc).DeleteCollection(testContext(t), metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: "stargate.io/server=worker-1"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("returns an Operation owned by the Server", func(t *testing.T) {
		srv := getServer(t, "worker-1")
		first = repave(t, "worker-1", req)
		if first.Kind != "Operation" || first.Name == "" {
			t.Fatalf("repave returned kind %q name %q, want a named Operation", first.Kind, first.Name)
		}
		owned := slices.ContainsFunc(first.OwnerReferences, func(o metav1.OwnerReference) bool {
			return o.Kind == "Server" && o.APIVersion == "stargate.io/v1alpha1" && o.Name == "worker-1" && o.UID == srv.UID
		})
		if !owned {
			t.Errorf("ownerReferences = %+v, want the Server worker-1 (uid %s)", first.OwnerReferences, srv.UID)
		}
		if first.Spec.ServerRef.Name != "worker-1" || first.Spec.Reason != "disk replaced" || first.Spec.ProvisioningProfileRef.Name != "default" {
			t.Errorf("spec = %+v, want serverRef worker-1, profile default, the request's reason", first.Spec)
		}
		// The Operation is stored, not only returned.
		kubectl(t, "get", "operation", first.Name, "-n", dc)
	})
	if first == nil {
		t.FailNow()
	}

	t.Run("second call while active is a 409 naming the Operation", func(t *testing.T) {
		r := world.Kubectl.Run(testContext(t), "create", "--raw", repavePath("worker-1"), "-f", writeFile(t, "req.json", req))
		mustFail(t, r, "Conflict", first.Name, "still")
	})

	t.Run("dryRun=All creates no Operation", func(t *testing.T) {
		before := operationsOf(t, "worker-2")
		lastOp := getServer(t, "worker-2").Status.LastOperation
		// kubectl passes the query through to the server.
		r := kubectl(t, "create", "--raw", repavePath("worker-2")+"?dryRun=All", "-f", writeFile(t, "req.json", req))
		dry := &v1alpha1.Operation{}
		if err := json.Unmarshal([]byte(r.Stdout), dry); err != nil || dry.Kind != "Operation" {
			t.Fatalf("dry-run answer is not an Operation (%v)\n%s", err, r)
		}
		if after := operationsOf(t, "worker-2"); !slices.Equal(after, before) {
			t.Errorf("Operations of worker-2 changed by a dry run: before %q, after %q", before, after)
		}
		if dry.Name != "" {
			mustFail(t, world.Kubectl.Run(testContext(t), "get", "operation", dry.Name, "-n", dc), "NotFound")
		}
		if got := getServer(t, "worker-2").Status.LastOperation; got != lastOp {
			t.Errorf("status.lastOperation of worker-2 = %q after a dry run, want it unchanged (%q)", got, lastOp)
		}
	})
}

// operationsOf lists the names of the Operations of a Server in dc.
func operationsOf(t *testing.T, server string) []string {
	t.Helper()
	list, err := client.StargateV1alpha1().Operations(dc).List(testContext(t), metav1.ListOptions{LabelSelector: "stargate.io/server=" + server})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range list.Items {
		names = append(names, o.Name)
	}
	return names
}

func TestGetRoutesReturnsServerRoutes(t *testing.T) {
	r := kubectl(t, "get", "--raw", "/apis/stargate.io/v1alpha1/namespaces/"+dc+"/servers/worker-1/routes")
	routes := &v1alpha1.ServerRoutes{}
	if err := json.Unmarshal([]byte(r.Stdout), routes); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r)
	}
	if routes.Kind != "ServerRoutes" || routes.APIVersion != "stargate.io/v1alpha1" {
		t.Errorf("kind %q apiVersion %q, want ServerRoutes stargate.io/v1alpha1", routes.Kind, routes.APIVersion)
	}
	var layers []string
	for _, l := range routes.Layers {
		layers = append(layers, string(l.Layer))
	}
	if want := []string{"azure", "tailscale", "cilium", "node"}; !slices.Equal(layers, want) {
		t.Errorf("layers = %q, want %q\n%s", layers, want, r)
	}
}

func TestServerSideApplyRecordsManagedFields(t *testing.T) {
	s := server("ssa-1", "10.50.1.31")
	kubectlIn(t, toJSON(t, s), "apply", "--server-side", "--field-manager=integration-test", "-f", "-")
	t.Cleanup(func() {
		world.Kubectl.Run(context.Background(), "delete", "server", "ssa-1", "-n", dc, "--ignore-not-found")
	})

	s.Spec.RouterIP = "10.50.1.1"
	kubectlIn(t, toJSON(t, s), "apply", "--server-side", "--field-manager=integration-test", "-f", "-")

	r := kubectl(t, "get", "server", "ssa-1", "-n", dc, "-o", "json", "--show-managed-fields")
	got := &v1alpha1.Server{}
	if err := json.Unmarshal([]byte(r.Stdout), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.RouterIP != "10.50.1.1" {
		t.Errorf("spec.routerIP = %q after the second apply, want 10.50.1.1", got.Spec.RouterIP)
	}
	i := slices.IndexFunc(got.ManagedFields, func(m metav1.ManagedFieldsEntry) bool {
		return m.Manager == "integration-test" && m.Operation == metav1.ManagedFieldsOperationApply
	})
	if i < 0 {
		t.Fatalf("no Apply entry of manager integration-test in managedFields: %+v", got.ManagedFields)
	}
	fields := string(got.ManagedFields[i].FieldsV1.Raw)
	for _, f := range []string{`"f:spec"`, `"f:ipAddress"`, `"f:routerIP"`} {
		if !strings.Contains(fields, f) {
			t.Errorf("managed fields of integration-test lack %s: %s", f, fields)
		}
	}
}

func TestExplainServerSpecHostKey(t *testing.T) {
	r := kubectl(t, "explain", "server.spec.hostKey")
	out := strings.Join(strings.Fields(r.Stdout), " ")
	for _, want := range []string{
		"FIELD: hostKey <string>",
		"hostKey pins the server's SSH host key, in authorized_keys form",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q\n%s", want, r)
		}
	}
}

func TestWatchSeesStatusUpdate(t *testing.T) {
	createServer(t, server("watch-1", "10.50.1.41"))
	w, err := world.Kubectl.Start(testContext(t), "get", "servers", "-n", dc, "-w")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := w.WaitFor(30*time.Second, func(out string) bool { return strings.Contains(out, "watch-1") }); err != nil {
		t.Fatalf("watch never listed watch-1: %v", err)
	}

	updateStatus(t, "watch-1", func(st *v1alpha1.ServerStatus) {
		st.Phase = v1alpha1.ServerReady
		st.NodeName = "watch-1-node"
		st.PodCIDR = "10.244.41.0/24"
	})

	err = w.WaitFor(30*time.Second, func(out string) bool {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 5 && f[0] == "watch-1" && f[2] == "Ready" && f[3] == "watch-1-node" && f[4] == "10.244.41.0/24" {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatal(fmt.Errorf("watch did not show the status update: %w", err))
	}
}
