package realnodes

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stargate-k8s/stargate/test/framework/nodes"
)

// The pods the network tests share: a netcheck server on rn-2, a
// netcheck client (itself serving too) on rn-1, and a Service in front of
// the server.
const (
	testNS      = "default"
	serverPod   = "server"
	clientPod   = "client"
	serviceName = "server"
	servePort   = 8080
)

var (
	podsOnce sync.Once
	podsErr  error
	serverIP string
	clientIP string
)

func netcheckPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			// Through kube-scheduler, not spec.nodeName.
			NodeSelector: map[string]string{corev1.LabelHostname: node},
			Containers: []corev1.Container{{
				Name:            "netcheck",
				Image:           nodes.NetcheckImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{"serve", fmt.Sprint(servePort)},
				Ports:           []corev1.ContainerPort{{ContainerPort: servePort}},
			}},
			TerminationGracePeriodSeconds: new(int64),
		},
	}
}

// startPods runs the server and client pods once and waits until both
// run with addresses out of their nodes' pod CIDRs.
func startPods(t *testing.T) {
	t.Helper()
	podsOnce.Do(func() { podsErr = createPods() })
	if podsErr != nil {
		t.Fatal(podsErr)
	}
}

func createPods() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pods := cp.Kube.CoreV1().Pods(testNS)
	for name, node := range map[string]string{serverPod: "rn-2", clientPod: "rn-1"} {
		if _, err := pods.Create(ctx, netcheckPod(name, node), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create pod %s: %w", name, err)
		}
	}
	for _, name := range []string{serverPod, clientPod} {
		var p *corev1.Pod
		var err error
		for {
			p, err = pods.Get(ctx, name, metav1.GetOptions{})
			if err == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				break
			}
			select {
			case <-ctx.Done():
				events := kubectl.Run(context.Background(), "-n", testNS, "describe", "pod", name)
				return fmt.Errorf("pod %s not running within 90s (%v):\n%s", name, err, events.Stdout)
			case <-time.After(200 * time.Millisecond):
			}
		}
		node, err := cp.Kube.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		_, cidr, err := net.ParseCIDR(node.Spec.PodCIDR)
		if err != nil || !cidr.Contains(net.ParseIP(p.Status.PodIP)) {
			return fmt.Errorf("pod %s on %s has IP %s, not out of the node's pod CIDR %s", name, p.Spec.NodeName, p.Status.PodIP, node.Spec.PodCIDR)
		}
		if name == serverPod {
			serverIP = p.Status.PodIP
		} else {
			clientIP = p.Status.PodIP
		}
	}
	return nil
}

// execClient runs netcheck in the client pod through kubectl exec and
// returns its output.
func execClient(t *testing.T, args ...string) string {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	r := kubectl.Run(ctx, append([]string{"-n", testNS, "exec", clientPod, "--", "/netcheck"}, args...)...)
	if r.Err != nil {
		t.Fatalf("netcheck %s from pod %s (%s): %v", strings.Join(args, " "), clientPod, clientIP, r)
	}
	return r.Stdout
}

func TestPodReachesPodOnAnotherNodeOverTCPAndICMP(t *testing.T) {
	startPods(t)
	got := execClient(t, "connect", net.JoinHostPort(serverIP, fmt.Sprint(servePort)))
	if want := "netcheck " + serverPod; strings.TrimSpace(got) != want {
		t.Errorf("TCP from %s on rn-1 to %s on rn-2 answered %q, want %q", clientIP, serverIP, got, want)
	}
	got = execClient(t, "ping", serverIP)
	if !strings.Contains(got, "echo reply from "+serverIP) {
		t.Errorf("ICMP from %s on rn-1 to %s on rn-2: %q, want an echo reply", clientIP, serverIP, got)
	}
}

func TestPodReachesClusterIPServiceThroughKubeProxy(t *testing.T) {
	startPods(t)
	ctx := testContext(t, 60*time.Second)
	svc, err := cp.Kube.CoreV1().Services(testNS).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: serviceName},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": serverPod},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(servePort)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, services, _ := net.ParseCIDR(nodes.ServiceCIDR)
	if !services.Contains(net.ParseIP(svc.Spec.ClusterIP)) {
		t.Fatalf("Service ClusterIP %s is not out of %s", svc.Spec.ClusterIP, nodes.ServiceCIDR)
	}
	// kube-proxy on rn-1 programs the ClusterIP once the EndpointSlice is
	// there; netcheck connect retries for 10s.
	got := execClient(t, "connect", net.JoinHostPort(svc.Spec.ClusterIP, "80"))
	if want := "netcheck " + serverPod; strings.TrimSpace(got) != want {
		t.Errorf("TCP from %s on rn-1 to Service %s (%s:80) answered %q, want %q", clientIP, serviceName, svc.Spec.ClusterIP, got, want)
	}
}

func TestKubectlLogsAndExecReachARealPod(t *testing.T) {
	startPods(t)
	// A connection from the client, so the server's log has a line of it.
	execClient(t, "connect", net.JoinHostPort(serverIP, fmt.Sprint(servePort)))
	r := kubectl.Run(testContext(t, 30*time.Second), "-n", testNS, "exec", serverPod, "--", "/netcheck", "connect", "127.0.0.1:8080")
	if r.Err != nil || strings.TrimSpace(r.Stdout) != "netcheck "+serverPod {
		t.Errorf("kubectl exec in pod %s: %v", serverPod, r)
	}
	r = kubectl.Run(testContext(t, 30*time.Second), "-n", testNS, "logs", serverPod)
	if r.Err != nil {
		t.Fatalf("kubectl logs %s: %v", serverPod, r)
	}
	for _, want := range []string{"serving on [::]:8080 as " + serverPod, "connection from " + clientIP + ":"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("kubectl logs %s lacks %q:\n%s", serverPod, want, r.Stdout)
		}
	}
}

// In-cluster clients reach kube-apiserver at the first Service IP, through
// kube-proxy, and verify its certificate with the ServiceAccount's CA.
func TestPodReachesKubeAPIServerThroughServiceKubernetes(t *testing.T) {
	startPods(t)
	got := execClient(t, "apiserver")
	if !strings.Contains(got, `"gitVersion": "v1.37.2"`) {
		t.Errorf("GET /version through Service default/kubernetes from pod %s answered %q, want kube-apiserver v1.37.2", clientPod, got)
	}
}
