package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Names under which stargate-apiserver is registered with the aggregator.
const (
	StargateNamespace   = "stargate-system"
	StargateServiceName = "stargate-apiserver"
	StargateGroup       = "stargate.io"
	StargateVersion     = "v1alpha1"
	StargateAPIService  = StargateVersion + "." + StargateGroup
)

// BuildStargate builds ./cmd/apiserver into binDir/stargate-apiserver and
// returns its path. It writes to a temporary name and renames, so test
// binaries of several packages building at once never run a half-written file.
func BuildStargate(ctx context.Context, repoRoot, binDir string) (string, error) {
	if _, err := os.Stat(filepath.Join(repoRoot, "cmd", "apiserver")); err != nil {
		return "", fmt.Errorf("cannot build stargate-apiserver, the server under test: %w", err)
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(binDir, "stargate-apiserver")
	tmp := fmt.Sprintf("%s.tmp-%d", out, os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "./cmd/apiserver")
	cmd.Dir = repoRoot
	if output, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("go build -o %s ./cmd/apiserver: %w\n%s", out, err, output)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	return out, nil
}

// StargateOptions configure a stargate-apiserver process.
type StargateOptions struct {
	// Binary is the stargate-apiserver program.
	Binary string
	// Dir holds its certificates, log and (with embedded etcd) data. It is
	// created when missing.
	Dir string
	// Port is the secure port; 0 picks a free loopback port once, which
	// restarts keep.
	Port int
	// EtcdServers, when set, makes the server store in that etcd under
	// EtcdPrefix. When empty it runs an embedded etcd under Dir/data.
	EtcdServers string
	EtcdPrefix  string
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
	// ReadyTimeout bounds each start; 2 minutes when zero.
	ReadyTimeout time.Duration
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// Stargate is a stargate-apiserver subprocess serving on loopback with a
// certificate from its own CA, authenticating and authorizing through the
// control plane's kube-apiserver.
type Stargate struct {
	cp   *ControlPlane
	opts StargateOptions

	// CA signed the serving certificate; it is the APIService's caBundle.
	CA      *CA
	Port    int
	LogFile string
	DataDir string

	certFile, keyFile string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status, valid once done is closed
}

// NewStargate prepares certificates and directories for a stargate-apiserver
// that delegates to cp; Start runs it.
func (cp *ControlPlane) NewStargate(opts StargateOptions) (*Stargate, error) {
	if opts.Binary == "" {
		return nil, errors.New("StargateOptions.Binary is empty; build it with BuildStargate")
	}
	if err := isExecutable(opts.Binary); err != nil {
		return nil, fmt.Errorf("stargate-apiserver binary: %w (build it with `go build -o bin/stargate-apiserver ./cmd/apiserver` or `make build`)", err)
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	s := &Stargate{cp: cp, opts: opts, Port: opts.Port, LogFile: filepath.Join(opts.Dir, "stargate-apiserver.log")}
	pkiDir := filepath.Join(opts.Dir, "pki")
	if err := os.MkdirAll(pkiDir, 0o755); err != nil {
		return nil, err
	}
	if opts.EtcdServers == "" {
		s.DataDir = filepath.Join(opts.Dir, "data")
		if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
			return nil, err
		}
	}
	if s.Port == 0 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = p
	}

	var err error
	if s.CA, err = NewCA("stargate-apiserver-ca"); err != nil {
		return nil, err
	}
	// The aggregator dials the ExternalName (localhost) but verifies the
	// certificate against the Service's DNS name, <name>.<namespace>.svc.
	serving, err := s.CA.ServingCert(StargateServiceName, []string{
		StargateServiceName + "." + StargateNamespace + ".svc",
		StargateServiceName + "." + StargateNamespace + ".svc.cluster.local",
		"localhost",
	}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		return nil, err
	}
	if s.certFile, s.keyFile, err = serving.Write(pkiDir, "serving"); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(pkiDir, "ca.crt"), s.CA.CertPEM, 0o644); err != nil {
		return nil, err
	}
	return s, nil
}

// Args is the command line the process runs with.
func (s *Stargate) Args() []string {
	kc := s.cp.AdminKubeconfig
	args := []string{
		"--secure-port=" + strconv.Itoa(s.Port),
		"--bind-address=127.0.0.1",
		"--tls-cert-file=" + s.certFile,
		"--tls-private-key-file=" + s.keyFile,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--kubeconfig=" + kc,
	}
	if s.opts.EtcdServers != "" {
		args = append(args, "--etcd-servers="+s.opts.EtcdServers)
		if s.opts.EtcdPrefix != "" {
			args = append(args, "--etcd-prefix="+s.opts.EtcdPrefix)
		}
	} else {
		args = append(args, "--data-dir="+s.DataDir)
	}
	return append(args, s.opts.ExtraArgs...)
}

// URL is where the server listens.
func (s *Stargate) URL() string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
}

// Start runs the process and waits until its /readyz answers 200.
func (s *Stargate) Start(ctx context.Context) error {
	if s.Running() {
		return errors.New("stargate-apiserver is already running")
	}
	log, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := s.Args()
	fmt.Fprintf(log, "==== %s %v\n", time.Now().Format(time.RFC3339), args)
	cmd := exec.Command(s.opts.Binary, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Own process group: a Ctrl-C in `make dev` reaches only the harness,
	// which then stops the server in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", s.opts.Binary, err)
	}
	s.cmd, s.done, s.err = cmd, make(chan struct{}), nil
	go func() {
		s.err = cmd.Wait()
		log.Close()
		close(s.done)
	}()
	s.opts.Logf("started stargate-apiserver (pid %d) on %s, log in %s", cmd.Process.Pid, s.URL(), s.LogFile)
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		return err
	}
	return nil
}

// Running says whether the process is alive.
func (s *Stargate) Running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Done is closed when the process of the latest Start exits.
func (s *Stargate) Done() <-chan struct{} {
	return s.done
}

// Stop sends SIGTERM, waits up to 30s for a graceful exit, then kills.
func (s *Stargate) Stop() error {
	if !s.Running() {
		return nil
	}
	if StopProcess(s.cmd.Process, s.done, syscall.SIGTERM, 30*time.Second) {
		return fmt.Errorf("stargate-apiserver did not exit within 30s of SIGTERM; killed it")
	}
	s.opts.Logf("stopped stargate-apiserver")
	return nil
}

// Restart stops the process and starts it again with the same port,
// certificates and storage.
func (s *Stargate) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start(ctx)
}

// LogTail is the end of the server's log, for failure messages.
func (s *Stargate) LogTail(lines int) string {
	return tail(s.LogFile, lines)
}

func (s *Stargate) waitReady(ctx context.Context) error {
	client, err := s.httpClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	last := "no answer yet"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/readyz", nil)
		if resp, err := client.Do(req); err != nil {
			last = err.Error()
		} else {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		}
		select {
		case <-s.done:
			return fmt.Errorf("stargate-apiserver exited before it was ready (%v); last lines of %s:\n%s", s.err, s.LogFile, s.LogTail(40))
		case <-ctx.Done():
			return fmt.Errorf("stargate-apiserver not ready on %s/readyz within %s (last: %s); last lines of %s:\n%s",
				s.URL(), s.opts.ReadyTimeout, last, s.LogFile, s.LogTail(40))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// httpClient trusts the serving CA and presents the admin client
// certificate, which the server accepts through the client CA it reads from
// extension-apiserver-authentication.
func (s *Stargate) httpClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	pool.AddCert(s.CA.Cert)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if c := s.cp.Config; len(c.CertData) > 0 {
		cert, err := tls.X509KeyPair(c.CertData, c.KeyData)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
