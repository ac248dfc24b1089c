package tailnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stargate-k8s/stargate/test/netns"
)

// RouterOptions say where a router runs.
type RouterOptions struct {
	// NetNS is an existing namespace to run tailscaled in (a DC router's
	// own); Stop then leaves the namespace and removes only what
	// StartRouter added to it. Empty: a new namespace <prefix>-r-<name>,
	// deleted by Stop.
	NetNS string
	// Addr, when set, attaches the namespace to the underlay with this
	// address (link "ul0"); a new namespace needs it.
	Addr netip.Prefix
	// Hostname is the device's name; the router's name when empty.
	Hostname string
}

// Router is tailscaled running in a namespace, with its state directory
// and socket under the control's directory.
type Router struct {
	Name, Hostname, NetNS string
	// Dir holds the state, the socket (ts.sock) and tailscaled.log.
	Dir    string
	Socket string

	c         *Control
	proc      *process
	ownsNetNS bool
	links     []string // links StartRouter added to NetNS
	stopped   bool
}

// StartRouter starts tailscaled (kernel TUN tailscale0, forwarding on,
// reverse-path filter off) in a namespace. The namespace gets a default
// route into an unattached TUN (sink0) when it has none: without one,
// tailscaled takes every link change for a change of the default route,
// drops its control connection and redials.
func (c *Control) StartRouter(name string, o RouterOptions) (_ *Router, err error) {
	if o.Hostname == "" {
		o.Hostname = name
	}
	r := &Router{Name: name, Hostname: o.Hostname, NetNS: o.NetNS, c: c, Dir: filepath.Join(c.Dir, "router-"+name)}
	r.Socket = filepath.Join(r.Dir, "ts.sock")
	// A unix socket's path has room for 107 bytes.
	if len(r.Socket) > 107 {
		return nil, fmt.Errorf("router %s: socket path %s is %d bytes, longer than a unix socket allows (107): use a shorter directory or router name", name, r.Socket, len(r.Socket))
	}
	if r.NetNS == "" {
		if !o.Addr.IsValid() {
			return nil, fmt.Errorf("router %s: a new namespace needs an underlay address", name)
		}
		r.NetNS, r.ownsNetNS = c.Prefix+"-r-"+name, true
	}
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.Stop())
		}
	}()
	if r.ownsNetNS {
		if err := netns.Add(r.NetNS); err != nil {
			return nil, err
		}
	}
	if o.Addr.IsValid() {
		if err := c.AttachUnderlay(r.NetNS, "ul0", o.Addr); err != nil {
			return nil, err
		}
		r.links = append(r.links, "ul0")
	}
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
	} {
		if err := netns.Sysctl(r.NetNS, kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	out, err := exec.Command("ip", "-n", r.NetNS, "route", "show", "default").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip -n %s route show default: %w: %s", r.NetNS, err, out)
	}
	if len(bytes.TrimSpace(out)) == 0 {
		if err := netns.In(r.NetNS, "tuntap", "add", "dev", "sink0", "mode", "tun"); err != nil {
			return nil, err
		}
		r.links = append(r.links, "sink0")
		if err := netns.In(r.NetNS, "link", "set", "sink0", "up"); err != nil {
			return nil, err
		}
		if err := netns.In(r.NetNS, "route", "add", "default", "dev", "sink0"); err != nil {
			return nil, err
		}
	}

	proc, err := startIn(r.NetNS, filepath.Join(r.Dir, "tailscaled.log"), c.TailscaledEnv(), nil, c.bins.Tailscaled,
		"--statedir="+r.Dir, "--socket="+r.Socket, "--no-logs-no-support", "--tun=tailscale0", "--port=41641")
	if err != nil {
		return nil, err
	}
	r.proc = proc
	c.mu.Lock()
	c.routers = append(c.routers, r)
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(r.Socket); err == nil {
			if _, err := r.CLI(ctx, "status", "--json"); err == nil {
				return r, nil
			}
		}
		if proc.exited() || ctx.Err() != nil {
			return nil, fmt.Errorf("tailscaled of router %s did not come up (see %s)", name, proc.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TailscaledEnv is the environment a tailscaled of this tailnet needs
// (for one started elsewhere, e.g. by a host's bootstrap): trust in the
// control's CA, no port mapping, no network checks against the Internet,
// and a panic rather than a connection to Tailscale's own control.
func (c *Control) TailscaledEnv() []string {
	return []string{
		"SSL_CERT_FILE=" + c.CAFile,
		"TS_ASSUME_NETWORK_UP_FOR_TEST=1",
		"TS_DISABLE_PORTMAPPER=1",
		"TS_PANIC_IF_HIT_MAIN_CONTROL=1",
		"TS_NETCHECK_GENERATE_204_URL=" + c.URL + "/generate_204",
	}
}

// CLI runs the tailscale CLI against this router's tailscaled and returns
// its standard output.
func (r *Router) CLI(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", r.NetNS, r.c.bins.Tailscale, "--socket=" + r.Socket}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("tailscale %s on router %s: %w: %s", strings.Join(args, " "), r.Name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Up joins the tailnet with the control's auth key (read by the CLI from
// its file, never on a command line), advertising routes and accepting the
// routes of others, without netfilter rules (there is no iptables here; no
// SNAT is what site-to-site routing wants) and without touching DNS.
func (r *Router) Up(ctx context.Context, advertise []string) error {
	_, err := r.CLI(ctx, "up",
		"--login-server="+r.c.URL,
		"--auth-key=file:"+r.c.AuthKeyFile,
		"--hostname="+r.Hostname,
		"--advertise-routes="+strings.Join(advertise, ","),
		"--accept-routes",
		"--accept-dns=false",
		"--netfilter-mode=off",
		"--timeout=60s",
	)
	return err
}

// Advertise makes the router advertise exactly routes, as `tailscale set
// --advertise-routes` does on a DC router.
func (r *Router) Advertise(ctx context.Context, routes []string) error {
	_, err := r.CLI(ctx, "set", "--advertise-routes="+strings.Join(routes, ","))
	return err
}

// IP is the router's tailnet IPv4 address (given in order of registration:
// look it up, never assume it).
func (r *Router) IP(ctx context.Context) (netip.Addr, error) {
	out, err := r.CLI(ctx, "ip", "-4")
	if err != nil {
		return netip.Addr{}, err
	}
	a, err := netip.ParseAddr(strings.TrimSpace(string(out)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("tailscale ip -4 on router %s: %w", r.Name, err)
	}
	return a, nil
}

// Stop stops tailscaled (by its PID), removes what StartRouter added to the
// namespace, and deletes the namespace when StartRouter created it. It may
// be called more than once.
func (r *Router) Stop() error {
	if r.stopped {
		return nil
	}
	r.stopped = true
	var errs []error
	if r.proc != nil {
		errs = append(errs, r.proc.stop())
	}
	if r.ownsNetNS {
		return errors.Join(append(errs, netns.Delete(r.NetNS))...)
	}
	// tailscaled removes tailscale0 when it exits cleanly; not when killed.
	for _, l := range append([]string{"tailscale0"}, r.links...) {
		if err := exec.Command("ip", "-n", r.NetNS, "link", "show", l).Run(); err != nil {
			continue // gone
		}
		errs = append(errs, netns.In(r.NetNS, "link", "delete", l))
	}
	return errors.Join(errs...)
}
