// Command kubelet-standin plays a kubelet for tests: with the bootstrap
// kubeconfig Stargate delivered it does the real kubelet TLS bootstrap
// (a node client CSR that kube-controller-manager approves and signs),
// writes the resulting kubeconfig, registers its Node with the given
// labels, reports Ready and keeps heartbeating until stopped. With
// --serving-csr it also asks for a kubelet serving certificate.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/retry"
)

func main() {
	var (
		bootstrapKC = flag.String("bootstrap-kubeconfig", "", "bootstrap kubeconfig (token)")
		kubeconfig  = flag.String("kubeconfig", "", "where to write the kubeconfig with the signed client certificate")
		nodeName    = flag.String("node-name", "", "Node name")
		nodeIP      = flag.String("node-ip", "", "node InternalIP")
		labels      = flag.String("node-labels", "", "k=v,k=v")
		servingCSR  = flag.Bool("serving-csr", false, "also request a kubelet serving certificate")
		heartbeat   = flag.Duration("heartbeat", 10*time.Second, "how often to renew the Ready condition")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *bootstrapKC, *kubeconfig, *nodeName, *nodeIP, *labels, *servingCSR, *heartbeat); err != nil {
		fmt.Fprintln(os.Stderr, "kubelet-standin:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bootstrapKC, kubeconfig, nodeName, nodeIP, labels string, servingCSR bool, heartbeat time.Duration) error {
	raw, err := clientcmd.LoadFromFile(bootstrapKC)
	if err != nil {
		return fmt.Errorf("load bootstrap kubeconfig: %w", err)
	}
	bcfg, err := clientcmd.NewDefaultClientConfig(*raw, nil).ClientConfig()
	if err != nil {
		return err
	}
	bclient, err := kubernetes.NewForConfig(bcfg)
	if err != nil {
		return err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csrPEM, err := makeCSR(key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}}})
	if err != nil {
		return err
	}
	log("requesting a node client certificate")
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	reqName, reqUID, err := csr.RequestCertificateWithContext(cctx, bclient, csrPEM, "", certificatesv1.KubeAPIServerClientKubeletSignerName, nil,
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}, key)
	if err != nil {
		return fmt.Errorf("create client CSR: %w", err)
	}
	certPEM, err := csr.WaitForCertificate(cctx, bclient, reqName, reqUID)
	if err != nil {
		return fmt.Errorf("wait for client CSR %s: %w", reqName, err)
	}
	log("client certificate issued through CSR " + reqName)

	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cluster := raw.Clusters[raw.Contexts[raw.CurrentContext].Cluster]
	out := clientcmdapi.NewConfig()
	out.Clusters["default"] = cluster
	out.AuthInfos["default"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	out.Contexts["default"] = &clientcmdapi.Context{Cluster: "default", AuthInfo: "default"}
	out.CurrentContext = "default"
	if err := os.MkdirAll(filepath.Dir(kubeconfig), 0o700); err != nil {
		return err
	}
	if err := clientcmd.WriteToFile(*out, kubeconfig); err != nil {
		return err
	}
	ncfg, err := clientcmd.NewDefaultClientConfig(*out, nil).ClientConfig()
	if err != nil {
		return err
	}
	nclient, err := kubernetes.NewForConfig(ncfg)
	if err != nil {
		return err
	}

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: parseLabels(labels)}}
	node.Labels[corev1.LabelHostname] = nodeName
	if _, err := nclient.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("register Node: %w", err)
	}
	log("registered Node " + nodeName)
	// Others (route controllers) update the Node too: retry like kubelet.
	if err := retry.RetryOnConflict(retry.DefaultBackoff, func() error { return setReady(ctx, nclient, nodeName, nodeIP) }); err != nil {
		return err
	}
	log("Node " + nodeName + " is Ready")

	if servingCSR {
		go requestServing(ctx, nclient, nodeName, nodeIP)
	}
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := setReady(ctx, nclient, nodeName, nodeIP); err != nil {
				log("heartbeat: " + err.Error())
			}
		}
	}
}

func makeCSR(key *ecdsa.PrivateKey, tmpl *x509.CertificateRequest) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func requestServing(ctx context.Context, c kubernetes.Interface, nodeName, nodeIP string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}}, DNSNames: []string{nodeName}}
	if ip := net.ParseIP(nodeIP); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	pemData, err := makeCSR(key, tmpl)
	if err != nil {
		return
	}
	name, uid, err := csr.RequestCertificateWithContext(ctx, c, pemData, "", certificatesv1.KubeletServingSignerName, nil,
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}, key)
	if err != nil {
		log("serving CSR: " + err.Error())
		return
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := csr.WaitForCertificate(wctx, c, name, uid); err != nil {
		log("serving CSR " + name + ": " + err.Error())
		return
	}
	log("serving certificate issued through CSR " + name)
}

func setReady(ctx context.Context, c kubernetes.Interface, name, ip string) error {
	n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "kubelet-standin is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}
	found := false
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			if n.Status.Conditions[i].Status == corev1.ConditionTrue {
				ready.LastTransitionTime = n.Status.Conditions[i].LastTransitionTime
			}
			n.Status.Conditions[i] = ready
			found = true
		}
	}
	if !found {
		n.Status.Conditions = append(n.Status.Conditions, ready)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}}
	if ip != "" {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	_, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

func parseLabels(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

func log(msg string) {
	fmt.Printf("%s kubelet-standin: %s\n", time.Now().Format(time.RFC3339Nano), msg)
}
