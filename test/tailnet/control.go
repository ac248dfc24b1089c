package tailnet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	tsclient "tailscale.com/client/tailscale/v2"

	"github.com/stargate-k8s/stargate/pkg/tailscale"
	"github.com/stargate-k8s/stargate/test/framework"
	"github.com/stargate-k8s/stargate/test/netns"
)

// DefaultControlAddr is the control server's address on the underlay
// segment, 203.0.113.192/26 (TEST-NET-3). The underlay lives only in this
// package's own namespaces, so tailnets of parallel tests reuse it freely.
var DefaultControlAddr = netip.MustParsePrefix("203.0.113.193/26")

// ControlOptions shape a tailnet.
type ControlOptions struct {
	// Addr is the control's address and prefix on the underlay;
	// DefaultControlAddr when unset.
	Addr netip.Prefix
	// BinDir holds tailscaled, tailscale and tailcontrol; the repository's
	// bin/ when empty.
	BinDir string
	// Prefix starts the name of every namespace this tailnet creates;
	// "tsn" and random hex when empty.
	Prefix string
	// Tailnet is the tailnet's name in the REST API; "stargate.test" when
	// empty.
	Tailnet string
}

// Control is a running control server (with DERP, STUN and the REST API)
// and the underlay segment that routers join.
type Control struct {
	// Prefix starts the names of this tailnet's namespaces.
	Prefix string
	// NetNS is the control's namespace; HubNetNS holds the underlay's
	// bridge br0.
	NetNS, HubNetNS string
	// Addr is the control's underlay address; Underlay its segment.
	Addr     netip.Addr
	Underlay netip.Prefix
	// URL is the control server (tailscale up --login-server).
	URL string
	// APIURL is the REST API v2 over plain HTTP on a loopback address of
	// the host's namespace, where tests and the controller run
	// (tailscale.Credentials.BaseURL).
	APIURL string
	// CAFile is the PEM CA that signed the control's certificate; nodes
	// trust it through SSL_CERT_FILE.
	CAFile string
	// AuthKey (also in AuthKeyFile) registers nodes.
	AuthKey, AuthKeyFile string
	// APIKey, and ClientID with ClientSecret, are the REST API's
	// credentials; the API refuses any other with 401.
	APIKey, ClientID, ClientSecret string
	// Tailnet is the tailnet's name.
	Tailnet string
	// Dir holds the keys, certificates and logs.
	Dir string

	bins Binaries

	mu      sync.Mutex
	proc    *process
	ports   int
	routers []*Router
	netns   []string // created namespaces other than NetNS and HubNetNS
	closed  bool
}

// StartControl starts a tailnet's control server in a network namespace of
// its own, on an underlay segment whose bridge lives in another, with its
// keys, certificates and log (tailcontrol.log) in dir. Close tears it all
// down; on error nothing is left behind.
func StartControl(dir string, o ControlOptions) (_ *Control, err error) {
	bins, err := FindBinaries(o.BinDir)
	if err != nil {
		return nil, err
	}
	if !o.Addr.IsValid() {
		o.Addr = DefaultControlAddr
	}
	if o.Prefix == "" {
		o.Prefix = "tsn" + randomHex(3)
	}
	if o.Tailnet == "" {
		o.Tailnet = "stargate.test"
	}
	c := &Control{
		Prefix: o.Prefix, NetNS: o.Prefix + "-ctl", HubNetNS: o.Prefix + "-hub",
		Addr: o.Addr.Addr(), Underlay: o.Addr.Masked(), Tailnet: o.Tailnet, Dir: dir, bins: bins,
		URL:          "https://" + o.Addr.Addr().String(),
		AuthKey:      "tskey-auth-" + randomHex(16),
		APIKey:       "tskey-api-" + randomHex(16),
		ClientID:     "k" + randomHex(8),
		ClientSecret: "tskey-client-" + randomHex(16),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	if err := c.writeFiles(); err != nil {
		return nil, err
	}

	// The underlay: a bridge in a namespace of its own, so that nothing
	// is added to the host's namespace.
	if err := netns.Add(c.HubNetNS); err != nil {
		return nil, err
	}
	if err := netns.In(c.HubNetNS, "link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	if err := netns.In(c.HubNetNS, "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	if err := netns.Add(c.NetNS); err != nil {
		return nil, err
	}
	if err := c.AttachUnderlay(c.NetNS, "eth0", o.Addr); err != nil {
		return nil, err
	}

	// The REST API's listener is opened here, in the host's namespace, and
	// handed to tailcontrol, which runs in its own.
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the REST API: %w", err)
	}
	apiFile, err := apiLn.(*net.TCPListener).File()
	apiLn.Close()
	if err != nil {
		return nil, err
	}
	defer apiFile.Close()
	c.APIURL = "http://" + apiLn.Addr().String()

	args := []string{
		"--listen=" + net.JoinHostPort(c.Addr.String(), "443"),
		"--tls-cert=" + filepath.Join(dir, "control.crt"),
		"--tls-key=" + filepath.Join(dir, "control.key"),
		"--auth-key-file=" + c.AuthKeyFile,
		"--api-key-file=" + filepath.Join(dir, "api-key"),
		"--oauth-client-id=" + c.ClientID,
		"--oauth-client-secret-file=" + filepath.Join(dir, "oauth-client-secret"),
		"--tailnet=" + c.Tailnet,
		"--api-fd=3",
	}
	proc, err := startIn(c.NetNS, filepath.Join(dir, "tailcontrol.log"), nil, []*os.File{apiFile}, bins.Tailcontrol, args...)
	if err != nil {
		return nil, err
	}
	c.proc = proc
	if err := c.waitReady(30 * time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

// waitReady waits until the REST API answers.
func (c *Control) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		if _, err := c.Devices(ctx); err == nil {
			return nil
		} else if ctx.Err() != nil || c.proc.exited() {
			return fmt.Errorf("tailcontrol did not come up (see %s): %w", c.proc.logPath, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Control) writeFiles() error {
	caPEM, certPEM, keyPEM, err := selfSignedTLS(c.Addr)
	if err != nil {
		return err
	}
	c.CAFile = filepath.Join(c.Dir, "ca.crt")
	c.AuthKeyFile = filepath.Join(c.Dir, "auth-key")
	files := map[string][]byte{
		c.CAFile:                                    caPEM,
		filepath.Join(c.Dir, "control.crt"):         certPEM,
		filepath.Join(c.Dir, "control.key"):         keyPEM,
		c.AuthKeyFile:                               []byte(c.AuthKey + "\n"),
		filepath.Join(c.Dir, "api-key"):             []byte(c.APIKey + "\n"),
		filepath.Join(c.Dir, "oauth-client-secret"): []byte(c.ClientSecret + "\n"),
	}
	for p, b := range files {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// APIKeyCredentials are Stargate's credentials for the REST API with the
// API key.
func (c *Control) APIKeyCredentials() tailscale.Credentials {
	return tailscale.Credentials{APIKey: c.APIKey, Tailnet: c.Tailnet, BaseURL: c.APIURL}
}

// OAuthCredentials are Stargate's credentials for the REST API with the
// OAuth client.
func (c *Control) OAuthCredentials() tailscale.Credentials {
	return tailscale.Credentials{ClientID: c.ClientID, ClientSecret: c.ClientSecret, Tailnet: c.Tailnet, BaseURL: c.APIURL}
}

// Devices lists the tailnet's devices, with their advertised and enabled
// routes, through the REST API.
func (c *Control) Devices(ctx context.Context) ([]tsclient.Device, error) {
	cl, err := tailscale.NewClient(c.APIKeyCredentials())
	if err != nil {
		return nil, err
	}
	return cl.Devices().List(ctx, tsclient.WithFields(tsclient.IncludeFieldsAll))
}

// AttachUnderlay plugs namespace ns into the underlay: a veth pair whose
// end ifname in ns has addr (from the underlay's segment) and whose other
// end is a port of the bridge.
func (c *Control) AttachUnderlay(ns, ifname string, addr netip.Prefix) error {
	c.mu.Lock()
	c.ports++
	port := fmt.Sprintf("p%d", c.ports)
	c.mu.Unlock()
	if err := netns.In(c.HubNetNS, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns); err != nil {
		return err
	}
	for _, args := range [][]string{
		{c.HubNetNS, "link", "set", port, "master", "br0", "up"},
		{ns, "addr", "add", addr.String(), "dev", ifname},
		{ns, "link", "set", ifname, "up"},
	} {
		if err := netns.In(args[0], args[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// Close stops every router still running, the control server, and deletes
// the namespaces the tailnet created. It may be called more than once.
func (c *Control) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	routers, extra := c.routers, c.netns
	c.mu.Unlock()
	var errs []error
	for _, r := range routers {
		errs = append(errs, r.Stop())
	}
	if c.proc != nil {
		errs = append(errs, c.proc.stop())
	}
	for _, ns := range append(extra, c.NetNS, c.HubNetNS) {
		errs = append(errs, netns.Delete(ns))
	}
	return errors.Join(errs...)
}

// selfSignedTLS makes a CA and a serving certificate for ip signed by it.
func selfSignedTLS(ip netip.Addr) (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stargate test tailnet CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip.String()},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{ip.AsSlice()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// process is a program started in a namespace, stopped by its PID.
type process struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	log     *os.File
}

// startIn runs bin with args in namespace ns (ip netns exec execs the
// program, so the PID is the program's), its output appended to logPath.
func startIn(ns, logPath string, env []string, files []*os.File, bin string, args ...string) (*process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = files
	// Killed with the test process when it dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s in %s: %w", filepath.Base(bin), ns, err)
	}
	p := &process{cmd: cmd, logPath: logPath, done: make(chan struct{}), log: log}
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, and SIGKILL after 10 s.
func (p *process) stop() error {
	if p.exited() {
		return nil
	}
	if !framework.StopProcess(p.cmd.Process, p.done, syscall.SIGTERM, 10*time.Second) {
		return nil
	}
	return fmt.Errorf("%s did not stop on SIGTERM within 10s and was killed", strings.Join(p.cmd.Args[3:4], ""))
}
