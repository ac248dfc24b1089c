package sshexec_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/stargate-k8s/stargate/pkg/sshexec"
	"github.com/stargate-k8s/stargate/test/dcsim"
)

func newKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKnownHosts(t *testing.T) {
	good, other, revoked := newKey(t), newKey(t), newKey(t)
	line := func(host string, k ssh.PublicKey) string { return knownhosts.Line([]string{host}, k) + "\n" }
	addr := &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 22}
	tests := []struct {
		name string
		data string
		host string
		key  ssh.PublicKey
		want string // "", "mismatch", "unknown"
	}{
		{"plain match", line("192.0.2.10", good), "192.0.2.10:22", good, ""},
		{"hashed match", knownhosts.HashHostname("192.0.2.10") + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(good))) + "\n", "192.0.2.10:22", good, ""},
		{"non-standard port", line("[192.0.2.10]:2222", good), "192.0.2.10:2222", good, ""},
		{"wildcard", "192.0.2.* " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(good))) + "\n", "192.0.2.10:22", good, ""},
		{"other key listed", line("192.0.2.10", other), "192.0.2.10:22", good, "mismatch"},
		{"host not listed", line("192.0.2.11", good), "192.0.2.10:22", good, "unknown"},
		{"revoked", "@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(revoked))) + "\n" + line("192.0.2.10", revoked), "192.0.2.10:22", revoked, "mismatch"},
		{"revoked on a later line", line("192.0.2.10", revoked) + "@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(revoked))) + "\n", "192.0.2.10:22", revoked, "mismatch"},
		{"comment after the last entry", line("192.0.2.10", good) + "# from ssh-keyscan\n", "192.0.2.10:22", good, ""},
		{"empty data", "", "192.0.2.10:22", good, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb, err := sshexec.KnownHosts([]byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			err = cb(tt.host, addr, tt.key)
			var mm *sshexec.HostKeyMismatchError
			var uk *sshexec.HostKeyUnknownError
			switch tt.want {
			case "":
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
			case "mismatch":
				if !errors.As(err, &mm) {
					t.Fatalf("want mismatch, got %v", err)
				}
			case "unknown":
				if !errors.As(err, &uk) {
					t.Fatalf("want unknown, got %v", err)
				}
			}
		})
	}
}

// A misspelt marker is refused rather than read as a plain entry, which
// would trust a key meant to be revoked.
func TestKnownHostsRefusesUnknownMarker(t *testing.T) {
	data := "@revokd 192.0.2.10 " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(newKey(t)))) + "\n"
	if _, err := sshexec.KnownHosts([]byte(data)); err == nil || !strings.Contains(err.Error(), "@revokd") {
		t.Fatalf("want an error naming the marker, got %v", err)
	}
}

func TestPinnedHostKeyMismatchNamesBothFingerprints(t *testing.T) {
	want, got := newKey(t), newKey(t)
	cb, err := sshexec.PinnedHostKey(string(ssh.MarshalAuthorizedKey(want)))
	if err != nil {
		t.Fatal(err)
	}
	err = cb("192.0.2.10:22", nil, got)
	var mm *sshexec.HostKeyMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("want mismatch, got %v", err)
	}
	for _, fp := range []string{ssh.FingerprintSHA256(want), ssh.FingerprintSHA256(got)} {
		if !strings.Contains(err.Error(), fp) {
			t.Errorf("error %q lacks fingerprint %s", err, fp)
		}
	}
}

// startSim starts a router and one worker, or fails with what is missing.
func startSim(t *testing.T) *dcsim.Sim {
	t.Helper()
	if err := dcsim.Check(""); err != nil {
		t.Fatalf("cannot run the SSH tests: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sim, err := dcsim.Start(ctx, dcsim.Options{Dir: t.TempDir(), Workers: 1, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Stop(); err != nil {
			t.Error(err)
		}
	})
	return sim
}

func jumpConfig(t *testing.T, sim *dcsim.Sim, targetIP, pinned string) sshexec.Config {
	t.Helper()
	return jumpConfigKnowing(t, sim, sim.KnownHosts(), targetIP, pinned)
}

// jumpConfigKnowing is jumpConfig with the known_hosts data that verifies
// the router, and the target when pinned is empty.
func jumpConfigKnowing(t *testing.T, sim *dcsim.Sim, knownHosts []byte, targetIP, pinned string) sshexec.Config {
	t.Helper()
	routerKey, err := sshexec.KnownHosts(knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	targetKey, err := sshexec.HostKeyCallback(pinned, knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	return sshexec.Config{
		User:             "root",
		Signer:           sim.ClientSigner,
		Jump:             &sshexec.Endpoint{Addr: net.JoinHostPort(sim.Router.IP, "22"), HostKey: routerKey},
		Target:           sshexec.Endpoint{Addr: net.JoinHostPort(targetIP, "22"), HostKey: targetKey},
		Dial:             sim.DialContext,
		HandshakeTimeout: 5 * time.Second,
		Attempts:         3,
		Backoff:          50 * time.Millisecond,
	}
}

func TestRunThroughJumpHost(t *testing.T) {
	sim := startSim(t)
	w := sim.Workers[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The worker is not reachable from the cloud side directly.
	if c, err := sim.DialContext(ctx, "tcp", net.JoinHostPort(w.IP, "22")); err == nil {
		c.Close()
		t.Fatal("worker reachable without the jump host; the simulation is wrong")
	}

	c, err := sshexec.Connect(ctx, jumpConfig(t, sim, w.IP, w.HostKey))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, err := c.Output(ctx, "ip -4 -o addr show dev eth0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), w.IP+"/24") {
		t.Fatalf("command did not run on the worker: %q", out)
	}
	var stdout strings.Builder
	if err := c.Run(ctx, "cat; exit 3", strings.NewReader("payload"), &stdout, nil); err == nil {
		t.Fatal("want exit status 3")
	} else {
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
			t.Fatalf("want ExitError 3, got %v", err)
		}
	}
	if stdout.String() != "payload" {
		t.Fatalf("stdin not delivered: %q", stdout.String())
	}
}

func TestWrongPinnedHostKeyOpensNoSession(t *testing.T) {
	sim := startSim(t)
	w := sim.Workers[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wrong := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(newKey(t))))
	cfg := jumpConfig(t, sim, w.IP, wrong)
	retried := 0
	cfg.OnRetry = func(int, error, time.Duration) { retried++ }
	_, err := sshexec.Connect(ctx, cfg)
	var mm *sshexec.HostKeyMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("want HostKeyMismatchError, got %v", err)
	}
	if retried != 0 {
		t.Errorf("a host key mismatch was retried %d times", retried)
	}
	if mm.Presented != ssh.FingerprintSHA256(w.HostSigner.PublicKey()) {
		t.Errorf("presented fingerprint %s is not the worker's", mm.Presented)
	}
	time.Sleep(200 * time.Millisecond) // let sshd write its log
	log, _ := os.ReadFile(w.SSHDLog)
	if strings.Contains(string(log), "Accepted publickey") {
		t.Fatalf("the worker accepted a login despite the mismatch:\n%s", log)
	}
}

func TestUnreachableTargetIsRetriedThenFails(t *testing.T) {
	sim := startSim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := jumpConfig(t, sim, dcsim.UnusedWorkerIP, "")
	cfg.Target.HostKey = ssh.FixedHostKey(sim.Workers[0].HostSigner.PublicKey())
	cfg.HandshakeTimeout = 2 * time.Second
	retried := 0
	cfg.OnRetry = func(int, error, time.Duration) { retried++ }
	_, err := sshexec.Connect(ctx, cfg)
	if err == nil {
		t.Fatal("connected to an address no host has")
	}
	if retried != cfg.Attempts-1 {
		t.Errorf("retried %d times, want %d", retried, cfg.Attempts-1)
	}
	if !strings.Contains(err.Error(), "gave up after 3 attempts") || !strings.Contains(err.Error(), dcsim.UnusedWorkerIP) {
		t.Errorf("error does not say what failed: %v", err)
	}
}

func TestUnknownJumpHostIsRefused(t *testing.T) {
	sim := startSim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := jumpConfig(t, sim, sim.Workers[0].IP, sim.Workers[0].HostKey)
	empty, _ := sshexec.KnownHosts(nil)
	cfg.Jump.HostKey = empty
	_, err := sshexec.Connect(ctx, cfg)
	var uk *sshexec.HostKeyUnknownError
	if !errors.As(err, &uk) {
		t.Fatalf("want HostKeyUnknownError for the router, got %v", err)
	}
}

func acceptedLogins(t *testing.T, h *dcsim.Host) int {
	t.Helper()
	time.Sleep(100 * time.Millisecond) // let sshd write its log
	log, _ := os.ReadFile(h.SSHDLog)
	return strings.Count(string(log), "Accepted publickey")
}

func TestJumpPoolSharesOneRouterConnection(t *testing.T) {
	sim := startSim(t)
	w := sim.Workers[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := sshexec.NewJumpPool(200 * time.Millisecond)
	defer pool.Close()
	cfg := jumpConfig(t, sim, w.IP, w.HostKey)
	cfg.Jump.HostKeyID = "known_hosts:sim"
	cfg.JumpPool = pool
	routerLogins := acceptedLogins(t, sim.Router)

	// Three connections at once share one router connection; each is its
	// own, verified connection to the worker.
	clients := make([]*sshexec.Client, 3)
	errs := make(chan error, len(clients))
	for i := range clients {
		go func() {
			c, err := sshexec.Connect(ctx, cfg)
			clients[i] = c
			errs <- err
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		out, err := c.Output(ctx, "ip -4 -o addr show dev eth0")
		if err != nil || !strings.Contains(string(out), w.IP+"/24") {
			t.Fatalf("command did not run on the worker: %q, %v", out, err)
		}
	}
	if got := pool.Dials(); got != 1 {
		t.Errorf("pool dialed the router %d times, want 1", got)
	}
	if got := acceptedLogins(t, sim.Router) - routerLogins; got != 1 {
		t.Errorf("router accepted %d logins, want 1", got)
	}

	// A wrong key for the worker fails through the pooled connection as
	// it would on its own, and leaves the pooled connection usable.
	bad := cfg
	wrong, err := sshexec.PinnedHostKey(string(ssh.MarshalAuthorizedKey(newKey(t))))
	if err != nil {
		t.Fatal(err)
	}
	bad.Target.HostKey = wrong
	var mm *sshexec.HostKeyMismatchError
	if _, err := sshexec.Connect(ctx, bad); !errors.As(err, &mm) {
		t.Fatalf("want HostKeyMismatchError, got %v", err)
	}
	// Another router verification (other known_hosts) gets its own
	// connection.
	other := cfg
	other.Jump = &sshexec.Endpoint{Addr: cfg.Jump.Addr, HostKey: cfg.Jump.HostKey, HostKeyID: "known_hosts:other"}
	c4, err := sshexec.Connect(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	c4.Close()
	if got := pool.Dials(); got != 2 {
		t.Errorf("pool dialed the router %d times, want 2 (one per HostKeyID)", got)
	}

	// Unused, the connection closes after the idle time; the next user
	// dials again.
	for _, c := range clients {
		c.Close()
		c.Close() // closing twice gives the pooled connection back once
	}
	c5, err := sshexec.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c5.Close()
	if got := pool.Dials(); got != 2 {
		t.Errorf("pool dialed %d times before the idle time, want 2", got)
	}
	time.Sleep(500 * time.Millisecond)
	c6, err := sshexec.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c6.Close()
	if _, err := c6.Output(ctx, "true"); err != nil {
		t.Fatal(err)
	}
	if got := pool.Dials(); got != 3 {
		t.Errorf("pool dialed %d times after the idle time, want 3", got)
	}
}

func TestJumpPoolUnreachableTargetKeepsRouterConnection(t *testing.T) {
	sim := startSim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool := sshexec.NewJumpPool(time.Minute)
	defer pool.Close()
	cfg := jumpConfig(t, sim, dcsim.UnusedWorkerIP, "")
	cfg.Target.HostKey = ssh.FixedHostKey(sim.Workers[0].HostSigner.PublicKey())
	cfg.HandshakeTimeout = 2 * time.Second
	cfg.Jump.HostKeyID = "known_hosts:sim"
	cfg.JumpPool = pool
	retried := 0
	cfg.OnRetry = func(int, error, time.Duration) { retried++ }
	_, err := sshexec.Connect(ctx, cfg)
	if err == nil {
		t.Fatal("connected to an address no host has")
	}
	if retried != cfg.Attempts-1 {
		t.Errorf("retried %d times, want %d", retried, cfg.Attempts-1)
	}
	if !strings.Contains(err.Error(), "gave up after 3 attempts") || !strings.Contains(err.Error(), dcsim.UnusedWorkerIP) || !strings.Contains(err.Error(), "through jump host") {
		t.Errorf("error does not say what failed: %v", err)
	}
	// The worker that is there is reached through the same pool.
	ok := jumpConfig(t, sim, sim.Workers[0].IP, sim.Workers[0].HostKey)
	ok.Jump.HostKeyID, ok.JumpPool = "known_hosts:sim", pool
	c, err := sshexec.Connect(ctx, ok)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
