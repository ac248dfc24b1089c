package routes

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/sshexec"
)

// secretKeyKnownHosts is the key of the profile's SSH Secret holding
// known_hosts, as for repave.
const secretKeyKnownHosts = "known_hosts"

// SSHAdvertiser makes a DC router advertise routes by running
// `tailscale set --advertise-routes=...` on it over SSH. It logs in as a
// repave does when it uses the router as jump host: the admin user and
// private key of the ProvisioningProfile of a Server behind that router,
// the router's host key checked against the profile Secret's known_hosts.
type SSHAdvertiser struct {
	Client client.Reader
	// Port is the routers' SSH port.
	Port int
	// Command is run with the comma-separated routes appended (quoted).
	Command string
	// Dial opens the TCP connection; a net.Dialer when nil (tests).
	Dial sshexec.DialFunc
	// Timeout bounds connect plus command.
	Timeout time.Duration
}

// Advertise implements tailscale.RouteAdvertiser.
func (a *SSHAdvertiser) Advertise(ctx context.Context, routerIP string, routes []string) error {
	cfg, err := a.config(ctx, routerIP)
	if err != nil {
		return err
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := sshexec.Connect(ctx, cfg)
	if err != nil {
		return fmt.Errorf("ssh to router %s: %w", cfg.Target.Addr, err)
	}
	defer c.Close()
	cmd := a.Command
	if cmd == "" {
		cmd = "sudo tailscale set --advertise-routes="
	}
	if _, err := c.Output(ctx, cmd+sshexec.Quote(strings.Join(routes, ","))); err != nil {
		return fmt.Errorf("run tailscale set on router %s: %w", cfg.Target.Addr, err)
	}
	return nil
}

// config finds the credentials for the router from a Server behind it.
func (a *SSHAdvertiser) config(ctx context.Context, routerIP string) (sshexec.Config, error) {
	var servers v1alpha1.ServerList
	if err := a.Client.List(ctx, &servers); err != nil {
		return sshexec.Config{}, fmt.Errorf("list Servers: %w", err)
	}
	var srv *v1alpha1.Server
	for i := range servers.Items {
		s := &servers.Items[i]
		if s.Spec.RouterIP == routerIP && s.Spec.ProvisioningProfileRef != nil {
			srv = s
			break
		}
	}
	if srv == nil {
		return sshexec.Config{}, fmt.Errorf("no Server with a profile names router %s: no SSH credentials for it", routerIP)
	}
	var prof v1alpha1.ProvisioningProfile
	if err := a.Client.Get(ctx, types.NamespacedName{Namespace: srv.Namespace, Name: srv.Spec.ProvisioningProfileRef.Name}, &prof); err != nil {
		return sshexec.Config{}, fmt.Errorf("ProvisioningProfile %s/%s of Server %s: %w", srv.Namespace, srv.Spec.ProvisioningProfileRef.Name, srv.Name, err)
	}
	if prof.Spec.SSHCredentialsSecretRef == nil {
		return sshexec.Config{}, fmt.Errorf("ProvisioningProfile %s/%s names no SSH credentials Secret", prof.Namespace, prof.Name)
	}
	var sec corev1.Secret
	if err := a.Client.Get(ctx, types.NamespacedName{Namespace: srv.Namespace, Name: prof.Spec.SSHCredentialsSecretRef.Name}, &sec); err != nil {
		return sshexec.Config{}, fmt.Errorf("SSH credentials Secret %s/%s: %w", srv.Namespace, prof.Spec.SSHCredentialsSecretRef.Name, err)
	}
	signer, err := sshexec.ParsePrivateKey(sec.Data[corev1.SSHAuthPrivateKey])
	if err != nil {
		return sshexec.Config{}, fmt.Errorf("Secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	hostKey, err := sshexec.KnownHosts(sec.Data[secretKeyKnownHosts])
	if err != nil {
		return sshexec.Config{}, fmt.Errorf("Secret %s/%s %s: %w", sec.Namespace, sec.Name, secretKeyKnownHosts, err)
	}
	port := a.Port
	if port == 0 {
		port = 22
	}
	return sshexec.Config{
		User:     prof.Spec.AdminUsername,
		Signer:   signer,
		Target:   sshexec.Endpoint{Addr: net.JoinHostPort(routerIP, strconv.Itoa(port)), HostKey: hostKey},
		Dial:     a.Dial,
		Attempts: 2,
	}, nil
}
