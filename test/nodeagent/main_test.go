// Package nodeagent_test runs stargate-nodeagent against the real
// kube-apiserver of test/framework, with stargate-apiserver behind its
// aggregator and Cilium's CiliumNode CRD installed, and against kernel
// routes in network namespaces the tests make (they need root).
//
// The agent authenticates as its real ServiceAccount with a real
// TokenRequest bound to a Pod on its Node, so stargate-apiserver's
// NodeAgentRestriction admission sees the node name of the bound token.
package nodeagent_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/generated/clientset/versioned"
	"github.com/stargate-k8s/stargate/pkg/nodeagent"
	"github.com/stargate-k8s/stargate/test/framework"
)

const (
	dc          = "dc-na"
	agentNS     = "stargate-nodeagent"
	agentSA     = "stargate-nodeagent"
	testTimeout = 3 * time.Minute
)

var (
	worldOnce sync.Once
	world     *framework.World
	worldErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if world != nil {
		if code != 0 {
			world.KeepDir = true
			fmt.Fprintf(os.Stderr, "tests failed; logs kept in %s\n", world.Dir)
		}
		if err := world.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop the test world: %v\n", err)
		}
	}
	os.Exit(code)
}

// getWorld starts the shared world on first use: kube-apiserver, etcd,
// stargate-apiserver, the CiliumNode CRD, artifacts/nodeagent and the
// datacenter namespace.
func getWorld(t testing.TB) *framework.World {
	t.Helper()
	worldOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		logf := func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "%s world: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
		}
		world, worldErr = framework.StartWorld(ctx, framework.WorldOptions{
			StargateBinary: os.Getenv("STARGATE_APISERVER_BINARY"),
			Logf:           logf,
		})
		if worldErr != nil {
			return
		}
		worldErr = prepareWorld(ctx, world)
	})
	if worldErr != nil {
		t.Fatalf("cannot start the test world (kube-apiserver, etcd and stargate-apiserver; see hack/install-test-bins.sh): %v", worldErr)
	}
	return world
}

func prepareWorld(ctx context.Context, w *framework.World) error {
	if err := framework.InstallCiliumNodeCRD(ctx, w.ControlPlane.Config); err != nil {
		return err
	}
	if r := w.Kubectl.Run(ctx, "apply", "-k", filepath.Join(w.RepoRoot, "artifacts", "nodeagent")); r.Err != nil {
		return fmt.Errorf("apply artifacts/nodeagent: %s", r)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: dc}}
	if _, err := w.ControlPlane.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return err
	}
	return nil
}

// nodeFixture is a worker as the API sees it: a Node, the agent's Pod
// bound to it, a Server registered as it, a CiliumNode, and a token of the
// agent's ServiceAccount bound to the Pod.
type nodeFixture struct {
	Node   string
	Server *v1alpha1.Server
	Token  string
	// Config is the agent's client config (the bound token).
	Config *rest.Config
	// Admin is the stargate clientset as system:masters.
	Admin versioned.Interface
	Dyn   dynamic.Interface
}

var nodeSeq atomic.Int64

// newNodeFixture makes the objects of one worker; ciliumCIDR is what its
// CiliumNode holds ("" for none).
func newNodeFixture(t testing.TB, w *framework.World, podCIDR, ciliumCIDR string) *nodeFixture {
	t.Helper()
	return newNodeFixtureIn(t, w, dc, podCIDR, ciliumCIDR)
}

// newNodeFixtureIn is newNodeFixture with the Server in namespace ns.
func newNodeFixtureIn(t testing.TB, w *framework.World, ns, podCIDR, ciliumCIDR string) *nodeFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kube := w.ControlPlane.Kube
	node := fmt.Sprintf("sgna-node-%d", nodeSeq.Add(1))
	f := &nodeFixture{Node: node}
	var err error
	if f.Admin, err = versioned.NewForConfig(w.ControlPlane.Config); err != nil {
		t.Fatal(err)
	}
	if f.Dyn, err = dynamic.NewForConfig(w.ControlPlane.Config); err != nil {
		t.Fatal(err)
	}

	n, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: node, Labels: map[string]string{"stargate.io/server": node, "stargate.io/datacenter": ns},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Node %s: %v", node, err)
	}
	pod, err := kube.CoreV1().Pods(agentNS).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "stargate-nodeagent-" + node, Namespace: agentNS},
		Spec: corev1.PodSpec{
			NodeName:           node,
			ServiceAccountName: agentSA,
			Containers:         []corev1.Container{{Name: "nodeagent", Image: "ghcr.io/stargate-k8s/stargate-nodeagent:test"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create agent Pod on %s: %v", node, err)
	}
	tr, err := kube.CoreV1().ServiceAccounts(agentNS).CreateToken(ctx, agentSA, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr(int64(3600)),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s bound to Pod %s: %v", agentNS, agentSA, pod.Name, err)
	}
	f.Token = tr.Status.Token
	f.Config = tokenConfig(w, f.Token)

	srv, err := f.Admin.StargateV1alpha1().Servers(ns).Create(ctx, &v1alpha1.Server{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Spec: v1alpha1.ServerSpec{
			Hostname: node, IPAddress: workerIP,
			ProvisioningProfileRef: &v1alpha1.LocalObjectReference{Name: "default"},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Server %s: %v", node, err)
	}
	// What the controller would have recorded: the node, its pod CIDR,
	// Ready, and a healthy Azure layer (which the agent must not touch).
	now := metav1.Now()
	srv.Status = v1alpha1.ServerStatus{
		Phase: v1alpha1.ServerReady, NodeName: node, PodCIDR: podCIDR,
		Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Ready", Message: "ready", LastTransitionTime: now}},
		Routes:     []v1alpha1.RouteLayerStatus{{Layer: v1alpha1.RouteLayerAzure, Healthy: true, Reason: "Synced", LastChecked: &now}},
	}
	if f.Server, err = f.Admin.StargateV1alpha1().Servers(ns).UpdateStatus(ctx, srv, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("set status of Server %s: %v", node, err)
	}

	if ciliumCIDR != "" {
		cn := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cilium.io/v2", "kind": "CiliumNode",
			"metadata": map[string]any{"name": node},
			"spec":     map[string]any{"ipam": map[string]any{"podCIDRs": []any{ciliumCIDR}}},
		}}
		if _, err := f.Dyn.Resource(nodeagent.CiliumNodes).Create(ctx, cn, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CiliumNode %s: %v", node, err)
		}
	}
	t.Logf("node fixture %s: Node uid %s, Pod %s/%s, Server %s/%s", node, n.UID, agentNS, pod.Name, ns, node)
	return f
}

func tokenConfig(w *framework.World, token string) *rest.Config {
	return &rest.Config{
		Host:            w.ControlPlane.Config.Host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: w.ControlPlane.Config.CAData},
		QPS:             50, Burst: 100,
	}
}

func ptr[T any](v T) *T { return &v }

// requestLog counts the requests a client makes, by method.
type requestLog struct {
	mu   sync.Mutex
	reqs []loggedRequest
}

type loggedRequest struct {
	At     time.Time
	Method string
	Path   string
	Watch  bool
}

func (l *requestLog) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			l.mu.Lock()
			l.reqs = append(l.reqs, loggedRequest{time.Now(), r.Method, r.URL.Path, r.URL.Query().Get("watch") == "true"})
			l.mu.Unlock()
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

// since returns the requests made at or after t.
func (l *requestLog) since(t time.Time) []loggedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []loggedRequest
	for _, r := range l.reqs {
		if !r.At.Before(t) {
			out = append(out, r)
		}
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
