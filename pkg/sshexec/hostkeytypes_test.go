package sshexec_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/stargate-k8s/stargate/pkg/sshexec"
	"github.com/stargate-k8s/stargate/test/dcsim"
)

// Stock Ubuntu hosts have RSA, ECDSA and Ed25519 host keys, and so have
// the simulated ones (dcsim.HostKeyTypes). A server presents the key of
// the first algorithm in the client's list it has a key for; these tests
// check that the client asks for the types it can verify.

// newKeyOfType returns a public key of type typ that no host has.
func newKeyOfType(t *testing.T, typ string) ssh.PublicKey {
	t.Helper()
	var pub any
	switch typ {
	case ssh.KeyAlgoED25519:
		return newKey(t)
	case ssh.KeyAlgoRSA:
		// The size does not matter for a key that must not match.
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384:
		curve := elliptic.P256()
		if typ == ssh.KeyAlgoECDSA384 {
			curve = elliptic.P384()
		}
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	default:
		t.Fatalf("no key of type %s", typ)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// recordPresented wraps cb to keep the key it accepted.
func recordPresented(cb ssh.HostKeyCallback, presented *ssh.PublicKey) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		if err == nil {
			*presented = key
		}
		return err
	}
}

// presentedByDefault returns the key the worker presents to a client with
// the library's default host key algorithms, reached through the router.
func presentedByDefault(t *testing.T, sim *dcsim.Sim, w *dcsim.Host) ssh.PublicKey {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := jumpConfigKnowing(t, sim, sim.KnownHostsOf(dcsim.HostKeyTypes...), sim.Router.IP, "")
	cfg.Jump = nil
	router, err := sshexec.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	conn, err := router.Dial("tcp", net.JoinHostPort(w.IP, "22"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var presented ssh.PublicKey
	_, _, _, _ = ssh.NewClientConn(conn, w.IP, &ssh.ClientConfig{
		User: "root",
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			presented = key
			return errors.New("only looking")
		},
		Timeout: 5 * time.Second,
	})
	if presented == nil {
		t.Fatal("the worker presented no key")
	}
	return presented
}

// The bug this is named after: a Server pinned by its Ed25519 key on a
// host that also has RSA and ECDSA keys got the ECDSA key presented and
// failed with a host key mismatch, because the client never said which
// host key algorithms it could verify.
func TestPinnedEd25519KeyOnHostWithRSAAndECDSAKeys(t *testing.T) {
	sim := startSim(t)
	w := sim.Workers[0]
	for _, typ := range []string{ssh.KeyAlgoRSA, ssh.KeyAlgoECDSA256, ssh.KeyAlgoED25519} {
		if w.HostKeyOf(typ) == "" {
			t.Fatalf("the simulated worker has no %s host key", typ)
		}
	}
	// The precondition of the bug: asked with the library's defaults,
	// the worker presents another key than its Ed25519 one.
	if k := presentedByDefault(t, sim, w); k.Type() == ssh.KeyAlgoED25519 {
		t.Fatalf("with the library's default host key algorithms the worker presents its %s key; this test no longer shows the bug", k.Type())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The router is known by all its keys, as ssh-keyscan lists them,
	// so whatever it presents verifies: this is about the pinned key.
	cfg := jumpConfigKnowing(t, sim, sim.KnownHostsOf(dcsim.HostKeyTypes...), w.IP, w.HostKeyOf(ssh.KeyAlgoED25519))
	var presented ssh.PublicKey
	cfg.Target.HostKey = recordPresented(cfg.Target.HostKey, &presented)
	c, err := sshexec.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if out, err := c.Output(ctx, "ip -4 -o addr show dev eth0"); err != nil || !strings.Contains(string(out), w.IP+"/24") {
		t.Fatalf("command did not run on the worker: %q, %v", out, err)
	}
	if presented.Type() != ssh.KeyAlgoED25519 {
		t.Errorf("the worker presented its %s key", presented.Type())
	}
}

// Pinning any of a host's keys works, and the router is verified by a
// known_hosts entry of the same type only.
func TestPinnedHostKeyOfEachType(t *testing.T) {
	sim := startSim(t)
	w := sim.Workers[0]
	for _, typ := range dcsim.HostKeyTypes {
		t.Run(typ, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cfg := jumpConfigKnowing(t, sim, sim.KnownHostsOf(typ), w.IP, w.HostKeyOf(typ))
			var routerKey, workerKey ssh.PublicKey
			cfg.Jump.HostKey = recordPresented(cfg.Jump.HostKey, &routerKey)
			cfg.Target.HostKey = recordPresented(cfg.Target.HostKey, &workerKey)
			c, err := sshexec.Connect(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if out, err := c.Output(ctx, "ip -4 -o addr show dev eth0"); err != nil || !strings.Contains(string(out), w.IP+"/24") {
				t.Fatalf("command did not run on the worker: %q, %v", out, err)
			}
			if routerKey.Type() != typ || workerKey.Type() != typ {
				t.Errorf("router presented %s, worker %s; want %s", routerKey.Type(), workerKey.Type(), typ)
			}
		})
	}
}

// known_hosts data works with an entry of any type for a host, and with
// several the host presents the key of the preferred type among them.
func TestKnownHostsOfEachType(t *testing.T) {
	sim := startSim(t)
	w := sim.Workers[0]
	tests := []struct {
		types []string
		want  string // the type of key the hosts present
	}{
		{[]string{ssh.KeyAlgoRSA}, ssh.KeyAlgoRSA},
		{[]string{ssh.KeyAlgoECDSA256}, ssh.KeyAlgoECDSA256},
		{[]string{ssh.KeyAlgoED25519}, ssh.KeyAlgoED25519},
		// What ssh-keyscan prints for a stock Ubuntu host.
		{dcsim.HostKeyTypes, ssh.KeyAlgoED25519},
		{[]string{ssh.KeyAlgoRSA, ssh.KeyAlgoECDSA256}, ssh.KeyAlgoECDSA256},
		{[]string{ssh.KeyAlgoRSA, ssh.KeyAlgoED25519}, ssh.KeyAlgoED25519},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.types, "+"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cfg := jumpConfigKnowing(t, sim, sim.KnownHostsOf(tt.types...), w.IP, "")
			var routerKey, workerKey ssh.PublicKey
			cfg.Jump.HostKey = recordPresented(cfg.Jump.HostKey, &routerKey)
			cfg.Target.HostKey = recordPresented(cfg.Target.HostKey, &workerKey)
			c, err := sshexec.Connect(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Output(ctx, "true"); err != nil {
				t.Fatal(err)
			}
			if routerKey.Type() != tt.want || workerKey.Type() != tt.want {
				t.Errorf("router presented %s, worker %s; want %s", routerKey.Type(), workerKey.Type(), tt.want)
			}
		})
	}
}

// A wrong key of any type, pinned or in known_hosts, is a host key
// mismatch that names the host's key of that type; it is not retried and
// no session is opened. A key of a type the host has none of is a
// mismatch too, not a network failure.
func TestWrongHostKeyOfEachTypeOpensNoSession(t *testing.T) {
	sim := startSim(t)
	w := sim.Workers[0]
	types := append(slices.Clone(dcsim.HostKeyTypes), ssh.KeyAlgoECDSA384)
	for _, typ := range types {
		wrong := newKeyOfType(t, typ)
		for _, how := range []string{"pinned", "known_hosts"} {
			t.Run(typ+"/"+how, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				var cfg sshexec.Config
				if how == "pinned" {
					cfg = jumpConfig(t, sim, w.IP, authorizedKey(wrong))
				} else {
					known := fmt.Sprintf("%s %s\n%s\n", sim.Router.IP, sim.Router.HostKey, knownhosts.Line([]string{w.IP}, wrong))
					cfg = jumpConfigKnowing(t, sim, []byte(known), w.IP, "")
				}
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
				if !slices.Equal(mm.Expected, []string{ssh.FingerprintSHA256(wrong)}) {
					t.Errorf("expected fingerprints %q, want the wrong key's %s", mm.Expected, ssh.FingerprintSHA256(wrong))
				}
				if own := w.HostSigners[typ]; own != nil {
					if mm.Presented != ssh.FingerprintSHA256(own.PublicKey()) {
						t.Errorf("presented %s, want the worker's %s key %s", mm.Presented, typ, ssh.FingerprintSHA256(own.PublicKey()))
					}
				} else if !strings.Contains(mm.Presented, "no key of type "+typ) {
					t.Errorf("presented %q, want it to say the worker has no %s key", mm.Presented, typ)
				}
				if n := acceptedLogins(t, w); n != 0 {
					t.Fatalf("the worker accepted %d logins despite the mismatch", n)
				}
			})
		}
	}
}
