package repave

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/generated/clientset/versioned"
	"github.com/stargate-k8s/stargate/test/dcsim"
	"github.com/stargate-k8s/stargate/test/framework"
)

const (
	controllerNamespace      = dcsim.ControllerNamespace
	controllerServiceAccount = dcsim.ControllerServiceAccount
)

// controllerUser is the ServiceAccount user of stargate-controller.
var controllerUser = "system:serviceaccount:" + controllerNamespace + ":" + controllerServiceAccount

// controllerKubeconfig applies the controller's ServiceAccount and RBAC
// from artifacts/controller and writes a kubeconfig with a token of that
// ServiceAccount: the tests run stargate-controller with exactly the
// permissions a deployment gives it, so a missing permission fails them.
func (e *testEnv) controllerKubeconfig(ctx context.Context, root string) (string, error) {
	cs, err := kubernetes.NewForConfig(e.world.ControlPlane.Config)
	if err != nil {
		return "", err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllerNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	dir := filepath.Join(root, "artifacts", "controller")
	if res := e.world.Kubectl.Run(ctx, "apply", "-f", filepath.Join(dir, "serviceaccount.yaml"), "-f", filepath.Join(dir, "rbac.yaml"),
		"-f", filepath.Join(dir, "admission-policy.yaml")); res.Err != nil {
		return "", fmt.Errorf("apply the controller's RBAC: %v", res)
	}
	expiry := int64((4 * time.Hour).Seconds())
	tr, err := cs.CoreV1().ServiceAccounts(controllerNamespace).CreateToken(ctx, controllerServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s: %w", controllerUser, err)
	}
	cfg := e.world.ControlPlane.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[controllerServiceAccount] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: controllerServiceAccount}
	kc.CurrentContext = "test"
	path := filepath.Join(e.dir, "controller.kubeconfig")
	return path, clientcmd.WriteToFile(*kc, path)
}

// The controller's RBAC is the least that works: the repave tests run with
// it, and it cannot list, watch or change what it only reads by name.
func TestControllerRBACIsNarrow(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		// Secrets and script ConfigMaps: by name, and only in datacenter
		// namespaces that bound stargate-controller-datacenter (the
		// fixtures did, as onboarding does).
		{[]string{"get", "secrets", "-n", dc}, "yes"},
		{[]string{"get", "configmaps", "-n", dc}, "yes"},
		{[]string{"get", "secrets", "-n", "default"}, "no"},
		{[]string{"get", "configmaps", "-n", "default"}, "no"},
		{[]string{"get", "secrets", "-n", controllerNamespace}, "no"},
		{[]string{"get", "secrets/stargate-tailscale", "-n", controllerNamespace}, "yes"},
		{[]string{"list", "secrets", "-n", dc}, "no"},
		{[]string{"watch", "secrets", "-A"}, "no"},
		{[]string{"list", "configmaps", "-n", "kube-system"}, "no"},
		{[]string{"create", "secrets", "-n", dc}, "no"},
		{[]string{"create", "secrets", "-n", "kube-system"}, "yes"},
		{[]string{"list", "secrets", "-n", "kube-system"}, "yes"},
		{[]string{"watch", "secrets", "-n", "kube-system"}, "no"},
		{[]string{"update", "servers", "-n", dc}, "yes"},
		// A ServerRollout's Operations, only in datacenter namespaces.
		{[]string{"create", "servers", "--subresource=repave", "-n", dc}, "yes"},
		{[]string{"create", "servers", "--subresource=reboot", "-n", dc}, "yes"},
		{[]string{"create", "servers", "--subresource=repave", "-n", "default"}, "no"},
		{[]string{"create", "servers", "-n", dc}, "no"},
		{[]string{"delete", "operations", "-n", dc}, "no"},
		// Datacenters are an admin's: the controller reads them, holds
		// them with its finalizer (the admission policy keeps its updates
		// to the finalizers) and records its Tailscale routes in status.
		{[]string{"list", "datacenters.stargate.io"}, "yes"},
		{[]string{"watch", "datacenters.stargate.io"}, "yes"},
		{[]string{"update", "datacenters.stargate.io"}, "yes"},
		{[]string{"update", "datacenters.stargate.io", "--subresource=status"}, "yes"},
		{[]string{"create", "datacenters.stargate.io"}, "no"},
		{[]string{"delete", "datacenters.stargate.io"}, "no"},
		// The drain before a repave or reboot (issue 11): list the pods
		// of the Server's Node, evict them (PDBs respected), delete what a
		// PDB still protects only with force, cordon the Node. Nothing
		// else on pods: no create, update, watch.
		{[]string{"list", "pods", "-A"}, "yes"},
		{[]string{"create", "pods", "--subresource=eviction", "-n", "default"}, "yes"},
		{[]string{"delete", "pods", "-n", "default"}, "yes"},
		{[]string{"patch", "nodes"}, "yes"},
		{[]string{"create", "pods", "-n", "default"}, "no"},
		{[]string{"update", "pods", "-n", "default"}, "no"},
		{[]string{"watch", "pods", "-A"}, "no"},
		// Only its own ClusterRoleBindings, by name.
		{[]string{"delete", "clusterrolebindings/stargate:kubelet-bootstrap"}, "yes"},
		{[]string{"update", "clusterrolebindings/stargate:kubelet-bootstrap"}, "yes"},
		{[]string{"delete", "clusterrolebindings/cluster-admin"}, "no"},
		{[]string{"update", "clusterrolebindings/system:node"}, "no"},
		{[]string{"list", "clusterrolebindings"}, "no"},
		{[]string{"bind", "clusterroles/cluster-admin"}, "no"},
	} {
		args := append([]string{"auth", "can-i", "--as=" + controllerUser}, c.args...)
		res := env.world.Kubectl.Run(context.Background(), args...)
		if got := strings.TrimSpace(res.Stdout); got != c.want {
			t.Errorf("kubectl %s: %q, want %q (%v)", strings.Join(args, " "), got, c.want, res.Err)
		}
	}
}

// Whoever holds stargate-controller's token (a bug, or a stolen token)
// cannot read the Secrets of a namespace no admin onboarded as a
// datacenter, nor of a namespace that has a Datacenter but whose admin did
// not bind the controller there: SubjectAccessReviews and real GETs with
// the token are refused, while the onboarded datacenter's SSH Secret is
// readable.
func TestControllerCannotReadSecretsOutsideDatacenters(t *testing.T) {
	ctx := context.Background()
	admin, err := kubernetes.NewForConfig(env.world.ControlPlane.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", env.controllerKC)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// victim: an ordinary namespace; unbound: declared a Datacenter, but
	// without the controller's RoleBinding.
	const victim, unbound = "victim-app", "dc-not-bound"
	for _, ns := range []string{victim, unbound} {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db-password", Namespace: ns}, StringData: map[string]string{"password": "hunter2"}}
		if _, err := admin.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	// A network of its own (no packet goes there), apart from dc-sim's.
	unboundDC := &v1.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: unbound},
		Spec: v1.DatacenterSpec{Namespace: unbound, WorkerSubnet: "203.0.113.128/25",
			Router: v1.DatacenterRouter{IP: "203.0.113.99"}, AgentGateway: "203.0.113.129"},
	}
	if err := env.c.Create(ctx, unboundDC); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.c.Delete(context.Background(), unboundDC)
		for _, ns := range []string{victim, unbound} {
			_ = admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})

	sar := func(ns, resource, name string) (bool, string) {
		t.Helper()
		r, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               controllerUser,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + controllerNamespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: resource, Name: name},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed, r.Status.Reason
	}
	for _, c := range []struct {
		ns, resource, name string
		want               bool
	}{
		{dc, "secrets", dcsim.SSHSecret, true},
		{dc, "configmaps", dcsim.ScriptsConfigMap, true},
		{victim, "secrets", "db-password", false},
		{victim, "configmaps", "kube-root-ca.crt", false},
		{unbound, "secrets", "db-password", false},
		{"default", "secrets", "anything", false},
		{controllerNamespace, "secrets", "stargate-controller-token", false},
		{controllerNamespace, "secrets", "stargate-tailscale", true},
	} {
		if got, why := sar(c.ns, c.resource, c.name); got != c.want {
			t.Errorf("SubjectAccessReview: %s get %s %s/%s: allowed=%v (%s), want %v", controllerUser, c.resource, c.ns, c.name, got, why, c.want)
		}
	}

	// The attack itself, with the controller's token.
	for _, ns := range []string{victim, unbound} {
		if s, err := ctl.CoreV1().Secrets(ns).Get(ctx, "db-password", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("the controller's token read Secret %s/db-password (%v, %d keys), want Forbidden", ns, err, len(s.Data))
		}
	}
	if _, err := ctl.CoreV1().Secrets(dc).Get(ctx, dcsim.SSHSecret, metav1.GetOptions{}); err != nil {
		t.Errorf("the controller's token cannot read its datacenter's SSH Secret %s/%s: %v", dc, dcsim.SSHSecret, err)
	}
}

// Should the controller (a bug, or its stolen token) try to delete or
// patch a Node it did not make, such as an AKS node, the API server
// refuses it: the ValidatingAdmissionPolicy of artifacts/controller
// admits only Nodes and CiliumNodes labelled for a Server. Its own
// Nodes stay deletable.
func TestControllerTokenCannotTouchForeignNode(t *testing.T) {
	ctx := context.Background()
	admin, err := kubernetes.NewForConfig(env.world.ControlPlane.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", env.controllerKC)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	foreign := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "aks-nodepool1-vmss-attack", Labels: map[string]string{"kubernetes.azure.com/cluster": "mc"}}}
	own := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "stargate-own-attack", Labels: map[string]string{"stargate.io/server": "x", "stargate.io/datacenter": dc}}}
	for _, n := range []*corev1.Node{foreign, own} {
		if _, err := admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		name := n.Name
		t.Cleanup(func() { _ = admin.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	// The policy reaches the API server's admission a moment after it is
	// created.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = ctl.CoreV1().Nodes().Delete(ctx, foreign.Name, metav1.DeleteOptions{})
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "only the Nodes and CiliumNodes it made") {
			break
		}
		if err == nil {
			t.Fatalf("the controller's token deleted Node %s, which is not Stargate's", foreign.Name)
		}
		if time.Now().After(deadline) {
			t.Fatalf("delete of a foreign Node by the controller: %v, want Forbidden by the admission policy", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	patch := []byte(`{"spec":{"podCIDR":"10.244.250.0/24","podCIDRs":["10.244.250.0/24"]}}`)
	if _, err := ctl.CoreV1().Nodes().Patch(ctx, foreign.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("pod CIDR patch of a foreign Node by the controller: %v, want Forbidden", err)
	}
	if n, err := admin.CoreV1().Nodes().Get(ctx, foreign.Name, metav1.GetOptions{}); err != nil || n.Spec.PodCIDR != "" {
		t.Errorf("foreign Node after the attempts: %v, podCIDR %q", err, n.Spec.PodCIDR)
	}
	if _, err := ctl.CoreV1().Nodes().Patch(ctx, own.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Errorf("the controller may not patch its own Node: %v", err)
	}
	if err := ctl.CoreV1().Nodes().Delete(ctx, own.Name, metav1.DeleteOptions{}); err != nil {
		t.Errorf("the controller may not delete its own Node: %v", err)
	}
}

// renderManifests is `kubectl kustomize dir` of the repository's
// artifacts, with the real kubectl, split into objects.
func renderManifests(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	res := env.world.Kubectl.Run(context.Background(), "kustomize", filepath.Join(env.world.RepoRoot, dir))
	if res.Err != nil {
		t.Fatalf("render %s: %v", dir, res)
	}
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(res.Stdout, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("render %s: %v\n%s", dir, err, doc)
		}
		objs = append(objs, u)
	}
	return objs
}

// The manifests as shipped (kubectl apply -k artifacts/) are secure by
// default: the aggregator verifies stargate-apiserver's certificate, and
// no ClusterRole bound cluster-wide to stargate-controller grants any
// Secret, wildcard, escalation or impersonation, or unnamed rights on
// ClusterRoleBindings and role binding.
func TestShippedManifestsVerifyTheAPIServerAndGrantTheControllerNoSecretsClusterWide(t *testing.T) {
	objs := renderManifests(t, "artifacts")
	byKind := map[string]map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if byKind[o.GetKind()] == nil {
			byKind[o.GetKind()] = map[string]*unstructured.Unstructured{}
		}
		byKind[o.GetKind()][o.GetNamespace()+"/"+o.GetName()] = o
	}

	as := byKind["APIService"]["/"+framework.StargateAPIService]
	if as == nil {
		t.Fatalf("artifacts/ render no APIService %s", framework.StargateAPIService)
	}
	if skip, found, _ := unstructured.NestedBool(as.Object, "spec", "insecureSkipTLSVerify"); found || skip {
		t.Errorf("APIService %s sets spec.insecureSkipTLSVerify=%v: the aggregator would not verify stargate-apiserver", as.GetName(), skip)
	}
	dep := byKind["Deployment"]["stargate-system/stargate-apiserver"]
	if dep == nil {
		t.Fatal("artifacts/ render no Deployment stargate-system/stargate-apiserver")
	}
	if args := fmt.Sprint(dep.Object["spec"].(map[string]any)["template"]); !strings.Contains(args, "--serving-cert-secret=") || !strings.Contains(args, "--apiservice-name="+framework.StargateAPIService) {
		t.Errorf("stargate-apiserver's Deployment runs without --serving-cert-secret and --apiservice-name=%s: nothing would put a caBundle into the APIService", framework.StargateAPIService)
	}

	// The ClusterRoles bound cluster-wide to the controller.
	var roles []string
	for _, b := range byKind["ClusterRoleBinding"] {
		var crb rbacv1.ClusterRoleBinding
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(b.Object, &crb); err != nil {
			t.Fatal(err)
		}
		for _, s := range crb.Subjects {
			if s.Kind == rbacv1.ServiceAccountKind && s.Namespace == controllerNamespace && s.Name == controllerServiceAccount {
				roles = append(roles, crb.RoleRef.Name)
			}
		}
	}
	if len(roles) == 0 {
		t.Fatal("no ClusterRoleBinding of artifacts/ names stargate-controller's ServiceAccount")
	}
	for _, name := range roles {
		if name == dcsim.ControllerDatacenterRole {
			t.Errorf("ClusterRole %s is bound cluster-wide to the controller; it must be bound per datacenter namespace", name)
		}
		u := byKind["ClusterRole"]["/"+name]
		if u == nil {
			t.Errorf("the controller is bound to ClusterRole %s, which artifacts/ do not ship", name)
			continue
		}
		var cr rbacv1.ClusterRole
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &cr); err != nil {
			t.Fatal(err)
		}
		for _, r := range cr.Rules {
			rule := fmt.Sprintf("ClusterRole %s rule %v %v %v %v", name, r.APIGroups, r.Resources, r.Verbs, r.ResourceNames)
			if slices.Contains(r.APIGroups, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.Verbs, "*") || len(r.NonResourceURLs) > 0 {
				t.Errorf("%s: wildcards or non-resource URLs", rule)
			}
			if slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, "secrets") {
				t.Errorf("%s: Secrets in every namespace", rule)
			}
			if slices.Contains(r.Verbs, "escalate") || slices.Contains(r.Verbs, "impersonate") {
				t.Errorf("%s: escalate or impersonate", rule)
			}
			if slices.Contains(r.Resources, "clusterrolebindings") && len(r.ResourceNames) == 0 && !slices.Equal(r.Verbs, []string{"create"}) {
				t.Errorf("%s: ClusterRoleBindings beyond create, not by name", rule)
			}
			if slices.Contains(r.Verbs, "bind") && len(r.ResourceNames) == 0 {
				t.Errorf("%s: may bind any role", rule)
			}
			if slices.Contains(r.Resources, "nodes") && (slices.Contains(r.Verbs, "create") || slices.Contains(r.Verbs, "update")) {
				t.Errorf("%s: creates or updates Nodes", rule)
			}
		}
	}
	// Its one Secret of stargate-system, by name: the Roles bound to the
	// controller there.
	for _, b := range byKind["RoleBinding"] {
		var rb rbacv1.RoleBinding
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(b.Object, &rb); err != nil {
			t.Fatal(err)
		}
		if rb.Namespace != controllerNamespace || rb.RoleRef.Kind != "Role" ||
			!slices.Contains(rb.Subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: controllerServiceAccount, Namespace: controllerNamespace}) {
			continue
		}
		u := byKind["Role"][controllerNamespace+"/"+rb.RoleRef.Name]
		if u == nil {
			t.Errorf("RoleBinding %s/%s names Role %s, which artifacts/ do not ship", rb.Namespace, rb.Name, rb.RoleRef.Name)
			continue
		}
		var r rbacv1.Role
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
			t.Fatal(err)
		}
		for _, rule := range r.Rules {
			if slices.Contains(rule.Resources, "secrets") && len(rule.ResourceNames) == 0 {
				t.Errorf("Role %s/%s grants every Secret of %s: %v", r.Namespace, r.Name, controllerNamespace, rule.Verbs)
			}
		}
	}

	// Onboarding a datacenter binds the controller there, and only there.
	var bound bool
	for _, u := range renderManifests(t, filepath.Join("artifacts", "datacenter")) {
		if u.GetKind() != "RoleBinding" {
			continue
		}
		var rb rbacv1.RoleBinding
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &rb); err != nil {
			t.Fatal(err)
		}
		if rb.RoleRef.Name == dcsim.ControllerDatacenterRole && rb.Namespace == "dc-east" &&
			slices.Contains(rb.Subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: controllerServiceAccount, Namespace: controllerNamespace}) {
			bound = true
		}
	}
	if !bound {
		t.Errorf("artifacts/datacenter does not bind %s to stargate-controller in its namespace", dcsim.ControllerDatacenterRole)
	}
}

// TestControllerTokenCannotWidenADatacenter: the controller's token may
// hold a Datacenter with its finalizer, but a change of the Datacenter's
// spec (the network an admin gave the datacenter) is refused by the
// admission policy stargate-apiserver enforces.
func TestControllerTokenCannotWidenADatacenter(t *testing.T) {
	ctx := context.Background()
	cfg, err := clientcmd.BuildConfigFromFlags("", env.controllerKC)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	widen := []byte(`{"spec":{"workerSubnet":"192.0.0.0/8"}}`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = ctl.StargateV1alpha1().Datacenters().Patch(ctx, dc, types.MergePatchType, widen, metav1.PatchOptions{})
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "only the finalizers") {
			break
		}
		if err == nil {
			t.Fatalf("the controller's token widened Datacenter %s's worker subnet", dc)
		}
		if time.Now().After(deadline) {
			t.Fatalf("spec patch of a Datacenter by the controller: %v, want Forbidden by the admission policy", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	label := []byte(`{"metadata":{"labels":{"example.com/attack":"x"}}}`)
	if _, err := ctl.StargateV1alpha1().Datacenters().Patch(ctx, dc, types.MergePatchType, label, metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("label patch of a Datacenter by the controller: %v, want Forbidden", err)
	}
	// Holding it with a finalizer, and letting go, is allowed.
	for _, hold := range []bool{true, false} {
		d, err := ctl.StargateV1alpha1().Datacenters().Get(ctx, dc, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var fins []string
		for _, f := range d.Finalizers {
			if f != "example.com/test-hold" {
				fins = append(fins, f)
			}
		}
		if hold {
			fins = append(fins, "example.com/test-hold")
		}
		d.Finalizers = fins
		if _, err := ctl.StargateV1alpha1().Datacenters().Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("finalizer change (hold %v) of a Datacenter by the controller: %v, want allowed", hold, err)
		}
	}
}
