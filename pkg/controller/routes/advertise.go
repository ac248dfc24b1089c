package routes

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/sshcreds"
	"github.com/stargate-k8s/stargate/pkg/sshexec"
)

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

// config finds the credentials for the router: only those of a Datacenter
// that declares it (spec.router.ip), taken from a Server of that
// Datacenter's namespace which names the router, and that Server's profile
// and Secret in the same namespace. A Server elsewhere naming the same
// router (any namespace can create one) lends nothing: its Secret could
// hold a key and known_hosts of the attacker's choosing.
func (a *SSHAdvertiser) config(ctx context.Context, routerIP string) (sshexec.Config, error) {
	var dcs v1alpha1.DatacenterList
	if err := a.Client.List(ctx, &dcs); err != nil {
		return sshexec.Config{}, fmt.Errorf("list Datacenters: %w", err)
	}
	declaring := declaringRouter(dcs.Items, routerIP)
	if len(declaring) == 0 {
		return sshexec.Config{}, fmt.Errorf("no Datacenter declares router %s (spec.router.ip): no SSH credentials may be used for it", routerIP)
	}
	var srv *v1alpha1.Server
	var profName string
	var names []string
	for _, dc := range declaring {
		names = append(names, dc.Name)
		var servers v1alpha1.ServerList
		if err := a.Client.List(ctx, &servers, client.InNamespace(dc.Spec.Namespace)); err != nil {
			return sshexec.Config{}, fmt.Errorf("list Servers of Datacenter %s (namespace %s): %w", dc.Name, dc.Spec.Namespace, err)
		}
		sort.Slice(servers.Items, func(i, j int) bool { return servers.Items[i].Name < servers.Items[j].Name })
		for i := range servers.Items {
			s := &servers.Items[i]
			if s.Namespace != dc.Spec.Namespace || s.Spec.RouterIP != routerIP {
				continue
			}
			name, err := sshcreds.ProfileOf(ctx, a.Client, s)
			if err != nil {
				return sshexec.Config{}, err
			}
			if name != "" {
				srv, profName = s, name
				break
			}
		}
		if srv != nil {
			break
		}
	}
	if srv == nil {
		return sshexec.Config{}, fmt.Errorf("router %s is declared by Datacenter %s, but no Server of its namespace that names it has a provisioning profile (spec.provisioningProfileRef, or that of its last Operation): no SSH credentials for it",
			routerIP, strings.Join(names, ", "))
	}
	var prof v1alpha1.ProvisioningProfile
	if err := a.Client.Get(ctx, types.NamespacedName{Namespace: srv.Namespace, Name: profName}, &prof); err != nil {
		return sshexec.Config{}, fmt.Errorf("ProvisioningProfile %s/%s of Server %s: %w", srv.Namespace, profName, srv.Name, err)
	}
	creds, err := sshcreds.Get(ctx, a.Client, &prof)
	if err != nil {
		return sshexec.Config{}, err
	}
	hostKey, err := sshexec.KnownHosts(creds.KnownHosts)
	if err != nil {
		return sshexec.Config{}, fmt.Errorf("Secret %s %s: %w", creds.Secret, sshcreds.KeyKnownHosts, err)
	}
	port := a.Port
	if port == 0 {
		port = 22
	}
	return sshexec.Config{
		User:     creds.User,
		Signer:   creds.Signer,
		Target:   sshexec.Endpoint{Addr: net.JoinHostPort(routerIP, strconv.Itoa(port)), HostKey: hostKey},
		Dial:     a.Dial,
		Attempts: 2,
	}, nil
}

// declaringRouter returns the Datacenters whose spec.router.ip is ip: live
// ones first (oldest first), then those being deleted, whose routes are
// still withdrawn with their credentials.
func declaringRouter(dcs []v1alpha1.Datacenter, ip string) []*v1alpha1.Datacenter {
	var out []*v1alpha1.Datacenter
	for i := range dcs {
		if dcs[i].Spec.Router.IP == ip && dcs[i].Spec.Namespace != "" {
			out = append(out, &dcs[i])
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.DeletionTimestamp.IsZero() != b.DeletionTimestamp.IsZero() {
			return a.DeletionTimestamp.IsZero()
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
	return out
}
