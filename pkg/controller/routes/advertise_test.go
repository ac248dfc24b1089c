package routes

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"net"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
)

// sshRouter is an SSH server on loopback that accepts one client key and
// records the commands it is asked to run, standing in for a DC router.
type sshRouter struct {
	addr     string
	hostKey  ssh.PublicKey
	mu       sync.Mutex
	commands []string
}

func startSSHRouter(t *testing.T, clientKey ssh.PublicKey) *sshRouter {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(clientKey.Marshal()) {
			return nil, nil
		}
		return nil, errUnknownKey
	}}
	cfg.AddHostKey(hostSigner)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	r := &sshRouter{addr: l.Addr().String(), hostKey: hostSigner.PublicKey()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go r.serve(c, cfg)
		}
	}()
	return r
}

type sshErr string

func (e sshErr) Error() string { return string(e) }

const errUnknownKey = sshErr("unknown key")

func (r *sshRouter) serve(c net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for req := range creqs {
				if req.Type != "exec" {
					_ = req.Reply(false, nil)
					continue
				}
				n := binary.BigEndian.Uint32(req.Payload)
				r.mu.Lock()
				r.commands = append(r.commands, string(req.Payload[4:4+n]))
				r.mu.Unlock()
				_ = req.Reply(true, nil)
				_, _ = ch.SendRequest("exit-status", false, []byte{0, 0, 0, 0})
				return
			}
		}()
	}
}

func TestSSHAdvertiserRunsTailscaleSetOnTheRouter(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, _ := ssh.NewPublicKey(pub)
	router := startSSHRouter(t, sshPub)

	const routerIP = "100.64.1.1"
	knownHosts := routerIP + " " + string(ssh.MarshalAuthorizedKey(router.hostKey))
	dc := &v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc"}, Spec: v1alpha1.DatacenterSpec{Namespace: "dc", WorkerSubnet: "10.50.1.0/24", Router: v1alpha1.DatacenterRouter{IP: routerIP}}}
	objs := []client.Object{
		&v1alpha1.Server{ObjectMeta: metav1.ObjectMeta{Name: "w1", Namespace: "dc"}, Spec: v1alpha1.ServerSpec{
			Hostname: "w1", IPAddress: "10.50.1.10", RouterIP: routerIP, ProvisioningProfileRef: &v1alpha1.LocalObjectReference{Name: "default"}}},
		&v1alpha1.ProvisioningProfile{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "dc"}, Spec: v1alpha1.ProvisioningProfileSpec{
			AdminUsername: "stargate", SSHCredentialsSecretRef: &v1alpha1.LocalObjectReference{Name: "ssh"}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ssh", Namespace: "dc"}, Type: corev1.SecretTypeSSHAuth,
			Data: map[string][]byte{corev1.SSHAuthPrivateKey: pem.EncodeToMemory(block), "known_hosts": []byte(knownHosts)}},
	}
	kube := fake.NewClientBuilder().WithScheme(manager.Scheme).WithObjects(append(objs, dc)...).Build()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != routerIP+":22" {
			t.Errorf("dialled %s, want %s:22", addr, routerIP)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, router.addr)
	}
	a := &SSHAdvertiser{Client: kube, Dial: dial}
	if err := a.Advertise(context.Background(), routerIP, []string{"10.244.1.0/24", "10.50.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	if want := "sudo tailscale set --advertise-routes='10.244.1.0/24,10.50.1.0/24'"; len(router.commands) != 1 || router.commands[0] != want {
		t.Fatalf("commands %q, want [%q]", router.commands, want)
	}

	// A router presenting a key the known_hosts does not list is refused.
	kube2 := fake.NewClientBuilder().WithScheme(manager.Scheme).WithObjects(dc, objs[0], objs[1], &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ssh", Namespace: "dc"}, Type: corev1.SecretTypeSSHAuth,
		Data: map[string][]byte{corev1.SSHAuthPrivateKey: pem.EncodeToMemory(block), "known_hosts": []byte(strings.Replace(knownHosts, routerIP, "100.64.9.9", 1))}}).Build()
	a.Client = kube2
	if err := a.Advertise(context.Background(), routerIP, []string{"10.244.1.0/24"}); err == nil || len(router.commands) != 1 {
		t.Fatalf("unverified router: err=%v commands=%q", err, router.commands)
	}
}
