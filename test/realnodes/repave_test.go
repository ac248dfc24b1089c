package realnodes

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/csrapproval"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
	"github.com/stargate-k8s/stargate/test/dcsim"
	"github.com/stargate-k8s/stargate/test/framework"
	"github.com/stargate-k8s/stargate/test/framework/nodes"
)

// The datacenter of the repave test: one Server, the node rn-sg, behind a
// jump host standing for the DC router.
const (
	repaveDC     = "dc-real"
	repaveNode   = "rn-sg"
	repaveRouter = "rn-router"
	profileName  = "real"
	repavedPod   = "repaved"
	// remoteCIDRs are the AKS pod and service CIDRs the node agent of
	// artifacts/nodeagent checks (--remote-cidrs): a DC worker routes them
	// through its DC router. Nothing is ever sent there.
	remoteCIDRs = "10.244.0.0/16 10.0.0.0/16"
)

// A Server is repaved the way users do (kubectl create --raw
// .../servers/NAME/repave) by stargate-controller, and the profile's
// script, run over SSH through the DC router on the node's namespace,
// starts a real containerd, kubelet and kube-proxy with the bootstrap
// kubeconfig Stargate delivered: the kubelet does TLS bootstrap, Stargate
// approves its client and serving CSRs, its Node gets the pod CIDR of
// Stargate's IPAM, reports kubelet v1.37.2 and containerd 2.4.2, and a pod
// there answers a pod on another node. Then the node agent DaemonSet of
// artifacts/ runs there and reports NodeRoutesHealthy from the node's real
// routes (issue 12, part 4 and the rest of part 3). Before, the same
// Server is repaved with test/repave's kubelet stand-in, and the test logs
// both times from the request to Node Ready.
func TestRepaveEndsInARealKubelet(t *testing.T) {
	ctx := testContext(t, 20*time.Minute)
	deployArtifacts(t)
	startPods(t) // the client pod on rn-1 that reaches the repaved node's pod
	c, err := client.New(cp.Config, client.Options{Scheme: manager.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	// Only this test's stargate-controller works on Servers: the one of
	// artifacts/ (its placeholder API server URL, the default pod CIDR
	// pool) is scaled to zero.
	if r := kubectl.Run(ctx, "-n", "stargate-system", "scale", "deployment/stargate-controller", "--replicas=0"); r.Err != nil {
		t.Fatalf("scale stargate-controller of artifacts/ to 0: %v", r)
	}
	if r := kubectl.Run(ctx, "-n", "stargate-system", "wait", "pods", "-l", "app.kubernetes.io/name=stargate-controller", "--for=delete", "--timeout=2m"); r.Err != nil {
		t.Fatalf("the pods of stargate-controller of artifacts/ did not go: %v", r)
	}
	// kube-controller-manager without node IPAM from now on (the nodes of
	// the cluster keep theirs): the repaved node's pod CIDR can only come
	// from Stargate. It still signs the CSRs Stargate approves.
	if err := kcm.Stop(); err != nil {
		t.Fatal(err)
	}
	if kcm, err = cp.StartControllerManager(ctx, framework.ControllerManagerOptions{}); err != nil {
		t.Fatal(err)
	}

	// The SSH side: stargate-controller's key, the router (a jump host)
	// and the Server's machine, a node whose daemons nothing starts yet.
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(key, "stargate-controller")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sshOpts := nodes.SSHOptions{AuthorizedKey: string(ssh.MarshalAuthorizedKey(signer.PublicKey()))}
	router, err := cluster.StartJumpHost(ctx, repaveRouter, sshOpts)
	if err != nil {
		t.Fatal(err)
	}
	// The node agent checks that the pod CIDR is routed to Cilium's host
	// device (artifacts/nodeagent): the node's pod bridge has its name.
	node, err := cluster.AddNode(ctx, nodes.NodeOptions{Name: repaveNode, ServerTLSBootstrap: true, PodBridge: "cilium_host", SSH: &sshOpts})
	if err != nil {
		t.Fatal(err)
	}

	// The same Server is repaved twice in this run, first with the kubelet
	// stand-in of test/repave (profile standin), then with the real
	// kubelet (profile real, the Server's own), to compare the two.
	standinState := filepath.Join(workDir, "standin")
	standinPID := filepath.Join(standinState, repaveNode, "pid")
	script := fmt.Sprintf(`#!/bin/bash
# A worker of the real-node tests: containerd, kubelet and kube-proxy are
# installed (the test framework's start script runs them), so bootstrapping
# starts them with what Stargate delivered.
set -euo pipefail
# shellcheck source=/dev/null
. ./stargate.env
# The kubelet stand-in of an earlier repave goes.
if [ -s %[4]s ]; then kill "$(cat %[4]s)" 2>/dev/null || true; rm -f %[4]s; fi
# The routes of a DC worker to the cluster: through its DC router.
for cidr in %[1]s; do ip route replace "$cidr" via %[2]s dev eth0; done
%[3]s ./bootstrap-kubelet.conf "$STARGATE_NODE_LABELS"
`, remoteCIDRs, router.IP, node.StartScript, standinPID)
	standin := buildStandin(t, ctx)
	knownHosts := fmt.Sprintf("%s %s\n%s %s\n", router.IP, router.HostKey, node.IP, node.HostKey)
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: repaveDC}},
		&v1.Datacenter{
			ObjectMeta: metav1.ObjectMeta{Name: repaveDC},
			Spec: v1.DatacenterSpec{
				Namespace:    repaveDC,
				WorkerSubnet: nodes.NodeNetwork,
				Router:       v1.DatacenterRouter{IP: router.IP},
				AgentGateway: router.IP,
			},
		},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "ssh", Namespace: repaveDC},
			Type:       corev1.SecretTypeSSHAuth,
			Data:       map[string][]byte{corev1.SSHAuthPrivateKey: pem.EncodeToMemory(block), "known_hosts": []byte(knownHosts)},
		},
		&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "scripts", Namespace: repaveDC},
			Data: map[string]string{
				profileName + ".sh": script,
				"standin.sh":        dcsim.StandinScript(standinState, standin, 0),
			},
		},
		&v1.ProvisioningProfile{
			ObjectMeta: metav1.ObjectMeta{Name: "standin", Namespace: repaveDC},
			Spec: v1.ProvisioningProfileSpec{
				KubernetesVersion:       "1.37",
				AdminUsername:           "root",
				SSHCredentialsSecretRef: &v1.LocalObjectReference{Name: "ssh"},
				BootstrapScriptRef:      &v1.ConfigMapKeyReference{Name: "scripts", Key: "standin.sh"},
			},
		},
		&v1.ProvisioningProfile{
			ObjectMeta: metav1.ObjectMeta{Name: profileName, Namespace: repaveDC},
			Spec: v1.ProvisioningProfileSpec{
				KubernetesVersion:       "1.37",
				AdminUsername:           "root",
				SSHCredentialsSecretRef: &v1.LocalObjectReference{Name: "ssh"},
				BootstrapScriptRef:      &v1.ConfigMapKeyReference{Name: "scripts", Key: profileName + ".sh"},
			},
		},
		&v1.Server{
			ObjectMeta: metav1.ObjectMeta{Name: repaveNode, Namespace: repaveDC},
			Spec: v1.ServerSpec{
				Hostname:               repaveNode,
				IPAddress:              node.IP,
				RouterIP:               router.IP,
				SSHPort:                22,
				HostKey:                node.HostKey,
				ProvisioningProfileRef: &v1.LocalObjectReference{Name: profileName},
			},
		},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}

	// Cilium's CiliumNode CRD: Stargate gives the node's CiliumNode the
	// Server's pod CIDR too, and the node agent compares the two.
	if err := framework.InstallCiliumNodeCRD(ctx, cp.Config); err != nil {
		t.Fatal(err)
	}
	startRepaveController(t, ctx)

	// Stargate's IPAM gives the Server a pod CIDR before the repave.
	var srv v1.Server
	waitFor(t, 2*time.Minute, "the Server's status.podCIDR", func() (bool, string) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: repaveDC, Name: repaveNode}, &srv); err != nil {
			return false, err.Error()
		}
		return srv.Status.PodCIDR != "", fmt.Sprintf("conditions %+v", srv.Status.Conditions)
	})

	standinAfter, standinNode := repaveServer(t, ctx, c, "standin", "")
	if got := standinNode.Status.NodeInfo.KubeletVersion; got == "v1.37.2" && standinNode.Status.NodeInfo.ContainerRuntimeVersion == "containerd://2.4.2" {
		t.Fatalf("the stand-in's Node looks like a real kubelet's")
	}
	csrsBefore := csrNames(t, ctx, c)
	readyAfter, n := repaveServer(t, ctx, c, "", standinNode.UID)
	t.Logf("repave POST to Node %s Ready: real kubelet %s, kubelet stand-in %s (same Server, same run)",
		repaveNode, readyAfter.Round(100*time.Millisecond), standinAfter.Round(100*time.Millisecond))
	// Stargate's routes controller sets the pod CIDR on the new Node.
	waitFor(t, time.Minute, "Node "+repaveNode+" spec.podCIDR", func() (bool, string) {
		if err := c.Get(ctx, client.ObjectKey{Name: repaveNode}, &n); err != nil {
			return false, err.Error()
		}
		return n.Spec.PodCIDR != "", "none yet"
	})

	info := n.Status.NodeInfo
	if info.KubeletVersion != "v1.37.2" || info.ContainerRuntimeVersion != "containerd://2.4.2" {
		t.Errorf("Node %s reports kubelet %q and runtime %q, want v1.37.2 and containerd://2.4.2", repaveNode, info.KubeletVersion, info.ContainerRuntimeVersion)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: repaveDC, Name: repaveNode}, &srv); err != nil {
		t.Fatal(err)
	}
	if n.Spec.PodCIDR == "" || n.Spec.PodCIDR != srv.Status.PodCIDR {
		t.Errorf("Node %s has pod CIDR %q, want the Server's status.podCIDR %q (Stargate's IPAM)", repaveNode, n.Spec.PodCIDR, srv.Status.PodCIDR)
	}
	if n.Labels[stargate.LabelServer] != repaveNode || n.Labels[stargate.LabelDatacenter] != repaveDC {
		t.Errorf("Node %s labels %v lack the Server's", repaveNode, n.Labels)
	}
	if srv.Status.NodeName != repaveNode || srv.Status.Phase != v1.ServerReady {
		t.Errorf("Server status: phase %s, node %q", srv.Status.Phase, srv.Status.NodeName)
	}
	checkCSRsApprovedByStargate(t, ctx, c, csrsBefore)

	// A pod on the repaved node answers the client pod on rn-1.
	pods := cp.Kube.CoreV1().Pods(testNS)
	if _, err := pods.Create(ctx, netcheckPod(repavedPod, repaveNode), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	waitFor(t, 2*time.Minute, "pod "+repavedPod+" Running on "+repaveNode, func() (bool, string) {
		if pod, err = pods.Get(ctx, repavedPod, metav1.GetOptions{}); err != nil {
			return false, err.Error()
		}
		return pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "", fmt.Sprintf("phase %s, conditions %+v", pod.Status.Phase, pod.Status.Conditions)
	})
	if _, cidr, err := net.ParseCIDR(srv.Status.PodCIDR); err != nil || !cidr.Contains(net.ParseIP(pod.Status.PodIP)) {
		t.Errorf("pod %s has IP %s, not out of the Server's pod CIDR %s", repavedPod, pod.Status.PodIP, srv.Status.PodCIDR)
	}
	got := execClient(t, "connect", net.JoinHostPort(pod.Status.PodIP, fmt.Sprint(servePort)))
	if want := "netcheck " + repavedPod; strings.TrimSpace(got) != want {
		t.Errorf("TCP from %s on rn-1 to %s on %s answered %q, want %q", clientIP, pod.Status.PodIP, repaveNode, got, want)
	}
	if got := execClient(t, "ping", pod.Status.PodIP); !strings.Contains(got, "echo reply from "+pod.Status.PodIP) {
		t.Errorf("ICMP from %s on rn-1 to %s on %s: %q, want an echo reply", clientIP, pod.Status.PodIP, repaveNode, got)
	}

	// The node agent of artifacts/ runs on the repaved node (the only one
	// with stargate.io/server) and reports its real routes as healthy.
	// Its DaemonSet goes with the test: it tolerates every taint, so the
	// teardown's cordon would not keep its pods from coming back.
	t.Cleanup(func() {
		kubectl.Run(context.Background(), "-n", "stargate-nodeagent", "delete", "daemonset", "stargate-nodeagent", "--wait=true", "--timeout=60s")
	})
	waitFor(t, 3*time.Minute, "NodeRoutesHealthy=True on Server "+repaveNode, func() (bool, string) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: repaveDC, Name: repaveNode}, &srv); err != nil {
			return false, err.Error()
		}
		cond := meta.FindStatusCondition(srv.Status.Conditions, stargate.ConditionNodeRoutesHealthy)
		if cond != nil && cond.Status == metav1.ConditionTrue {
			return true, ""
		}
		agents := kubectl.Run(ctx, "-n", "stargate-nodeagent", "get", "pods", "-o", "wide")
		logs := kubectl.Run(ctx, "-n", "stargate-nodeagent", "logs", "daemonset/stargate-nodeagent", "--tail=20")
		prev := kubectl.Run(ctx, "-n", "stargate-nodeagent", "logs", "daemonset/stargate-nodeagent", "--previous", "--tail=20")
		return false, fmt.Sprintf("condition %+v\n%s%s\nagent log:\n%s%s\nprevious:\n%s%s", cond, agents.Stdout, agents.Stderr, logs.Stdout, logs.Stderr, prev.Stdout, prev.Stderr)
	})
	cond := meta.FindStatusCondition(srv.Status.Conditions, stargate.ConditionNodeRoutesHealthy)
	t.Logf("NodeRoutesHealthy on Server %s: %s: %s", repaveNode, cond.Reason, cond.Message)
	if cc := meta.FindStatusCondition(srv.Status.Conditions, stargate.ConditionCiliumPodCIDRMatches); cc != nil {
		t.Logf("CiliumPodCIDRMatches on Server %s: %s %s: %s", repaveNode, cc.Status, cc.Reason, cc.Message)
	}
	if r := kubectl.Run(ctx, "get", "nodes", "-o", "wide"); r.Err == nil {
		t.Logf("nodes:\n%s", r.Stdout)
	}
	t.Logf("RSS of %s's processes: %d MiB", repaveNode, node.RSS()>>20)
}

// checkCSRsApprovedByStargate asserts that the repaved kubelet's client
// and serving CSRs (those not in earlier) were approved by Stargate's
// approvers and signed.
func checkCSRsApprovedByStargate(t *testing.T, ctx context.Context, c client.Client, earlier map[string]bool) {
	t.Helper()
	want := map[string]string{
		certificatesv1.KubeAPIServerClientKubeletSignerName: csrapproval.ReasonClientApproved,
		certificatesv1.KubeletServingSignerName:             csrapproval.ReasonApproved,
	}
	waitFor(t, time.Minute, "the client and serving CSRs of "+repaveNode+" approved by Stargate and signed", func() (bool, string) {
		var csrs certificatesv1.CertificateSigningRequestList
		if err := c.List(ctx, &csrs); err != nil {
			return false, err.Error()
		}
		var seen []string
		done := map[string]bool{}
		for _, r := range csrs.Items {
			if earlier[r.Name] {
				continue // the stand-in's
			}
			reason := ""
			for _, cond := range r.Status.Conditions {
				if cond.Type == certificatesv1.CertificateApproved {
					reason = cond.Reason
				}
			}
			seen = append(seen, fmt.Sprintf("%s %s %s approved=%q signed=%t", r.Name, r.Spec.SignerName, r.Spec.Username, reason, len(r.Status.Certificate) > 0))
			ours := r.Spec.Username == "system:node:"+repaveNode || strings.HasPrefix(r.Spec.Username, "system:bootstrap:")
			if ours && want[r.Spec.SignerName] != "" && reason == want[r.Spec.SignerName] && len(r.Status.Certificate) > 0 {
				done[r.Spec.SignerName] = true
			}
		}
		return len(done) == len(want), strings.Join(seen, "\n")
	})
}

// repaveServer asks for a repave of the Server the way users do (profile
// "" is the Server's own) and waits until a Node other than the one of UID
// stale is Ready and the Operation succeeded. It returns the time from the
// request to Node Ready, and that Node.
func repaveServer(t *testing.T, ctx context.Context, c client.Client, profile string, stale types.UID) (time.Duration, corev1.Node) {
	t.Helper()
	body := `{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","reason":"real-node test"`
	if profile != "" {
		body += `,"provisioningProfileRef":{"name":"` + profile + `"}`
	}
	body += "}"
	start := time.Now()
	res := kubectl.RunWithInput(ctx, body, "create", "--raw", "/apis/stargate.io/v1alpha1/namespaces/"+repaveDC+"/servers/"+repaveNode+"/repave", "-f", "-")
	if res.Err != nil {
		t.Fatalf("repave %s: %v", repaveNode, res)
	}
	opName := between(res.Stdout, `"name":"`, `"`)
	if opName == "" {
		t.Fatalf("repave answered no Operation: %s", res.Stdout)
	}
	var readyAfter time.Duration
	var n corev1.Node
	waitFor(t, 5*time.Minute, "Node "+repaveNode+" Ready after repave "+opName, func() (bool, string) {
		if err := c.Get(ctx, client.ObjectKey{Name: repaveNode}, &n); err != nil {
			return false, err.Error() + opSummary(ctx, c, opName)
		}
		if n.UID == stale {
			return false, "the Node of the previous repave is still there" + opSummary(ctx, c, opName)
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				readyAfter = time.Since(start)
				return true, ""
			}
		}
		return false, fmt.Sprintf("conditions %+v%s", n.Status.Conditions, opSummary(ctx, c, opName))
	})
	var op v1.Operation
	waitFor(t, 3*time.Minute, "Operation "+opName+" finished", func() (bool, string) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: repaveDC, Name: opName}, &op); err != nil {
			return false, err.Error()
		}
		return op.Status.Phase == v1.OperationSucceeded || op.Status.Phase == v1.OperationFailed, string(op.Status.Phase)
	})
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("Operation %s: %s: %s\noutput:\n%s", opName, op.Status.Phase, op.Status.Message, op.Status.OutputTail)
	}
	t.Logf("Operation %s (profile %q) Succeeded %s after the request, Node Ready after %s", opName, profile,
		time.Since(start).Round(100*time.Millisecond), readyAfter.Round(100*time.Millisecond))
	return readyAfter, n
}

// csrNames lists the CSRs there are now.
func csrNames(t *testing.T, ctx context.Context, c client.Client) map[string]bool {
	t.Helper()
	var csrs certificatesv1.CertificateSigningRequestList
	if err := c.List(ctx, &csrs); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, r := range csrs.Items {
		names[r.Name] = true
	}
	return names
}

// buildStandin builds test/kubelet-standin, the kubelet stand-in of
// test/repave.
func buildStandin(t *testing.T, ctx context.Context) string {
	t.Helper()
	root, err := framework.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(workDir, "kubelet-standin")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./test/kubelet-standin")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./test/kubelet-standin: %v\n%s", err, out)
	}
	return bin
}

// startRepaveController builds stargate-controller and runs it on the
// host for the test: it reaches the jump host and the kube-apiserver on
// the node network, allocates pod CIDRs out of the nodes' range (the
// nodes' own CIDRs are taken) and sets them on Nodes.
func startRepaveController(t *testing.T, ctx context.Context) {
	t.Helper()
	root, err := framework.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(workDir, "stargate-controller")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/controller")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/controller: %v\n%s", err, out)
	}
	caFile := filepath.Join(workDir, "cluster-ca.crt")
	if err := os.WriteFile(caFile, cp.Config.CAData, 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(workDir, "stargate-controller.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--kubeconfig="+cp.AdminKubeconfig,
		"--leader-elect=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:0",
		"--control-plane-mode=aks",
		"--api-server-url="+cp.Config.Host,
		"--api-server-ca-file="+caFile,
		"--pod-cidr-pool="+nodes.ClusterCIDR,
		fmt.Sprintf("--pod-cidr-size=%d", nodes.PodCIDRMaskSize),
		"--service-cluster-ip-range="+nodes.ServiceCIDR,
		"--ssh-connect-attempts=3",
		"--ssh-retry-backoff=500ms",
		"--node-ready-timeout=4m",
		"--route-pass-delay=200ms",
		"--v=2",
	)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		framework.StopProcess(cmd.Process, done, os.Interrupt, 15*time.Second)
		if t.Failed() {
			t.Logf("stargate-controller log (%s):\n%s", logPath, tail(logPath, 40))
		}
	})
}

// waitFor polls cond every half second until it holds, or fails the test
// with what it last said.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, why)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func opSummary(ctx context.Context, c client.Client, name string) string {
	var op v1.Operation
	if err := c.Get(ctx, client.ObjectKey{Namespace: repaveDC, Name: name}, &op); err != nil {
		return "; Operation: " + err.Error()
	}
	return fmt.Sprintf("; Operation %s: %s %q\n%s", name, op.Status.Phase, op.Status.Message, op.Status.OutputTail)
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	j := strings.Index(s, end)
	if j < 0 {
		return ""
	}
	return s[:j]
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
