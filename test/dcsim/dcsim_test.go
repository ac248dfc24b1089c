package dcsim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// presentedKey returns the key host h presents to a client that accepts
// only host key algorithm algo. It reaches a worker through the router.
func presentedKey(t *testing.T, s *Sim, h *Host, algo string) (ssh.PublicKey, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addr := net.JoinHostPort(h.IP, "22")
	var conn net.Conn
	if h == s.Router {
		c, err := s.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	} else {
		rc, err := s.DialContext(ctx, "tcp", net.JoinHostPort(s.Router.IP, "22"))
		if err != nil {
			t.Fatal(err)
		}
		router, chans, reqs, err := ssh.NewClientConn(rc, s.Router.IP, &ssh.ClientConfig{
			User:              "root",
			Auth:              []ssh.AuthMethod{ssh.PublicKeys(s.ClientSigner)},
			HostKeyCallback:   ssh.FixedHostKey(s.Router.HostSigner.PublicKey()),
			HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
			Timeout:           10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		rcl := ssh.NewClient(router, chans, reqs)
		defer rcl.Close()
		if conn, err = rcl.Dial("tcp", addr); err != nil {
			t.Fatal(err)
		}
	}
	defer conn.Close()
	var presented ssh.PublicKey
	_, _, _, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:              "root",
		HostKeyAlgorithms: []string{algo},
		// Called once the host proved it holds the key.
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			presented = key
			return errors.New("only looking")
		},
		Timeout: 10 * time.Second,
	})
	if presented == nil {
		return nil, err
	}
	return presented, nil
}

// Every simulated host has the host keys of a stock Ubuntu host (RSA of
// 3072 bits, ECDSA on P-256, Ed25519) and presents whichever a client asks
// for; HostKey, HostSigner and KnownHosts stay the Ed25519 key.
func TestHostsHaveUbuntuHostKeys(t *testing.T) {
	if err := Check(""); err != nil {
		t.Fatalf("cannot run the simulation: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{Dir: t.TempDir(), Workers: 1, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	// rsa-sha2-512, not ssh-rsa: OpenSSH refuses SHA-1 signatures.
	algos := map[string]string{ssh.KeyAlgoRSA: ssh.KeyAlgoRSASHA512, ssh.KeyAlgoECDSA256: ssh.KeyAlgoECDSA256, ssh.KeyAlgoED25519: ssh.KeyAlgoED25519}
	for _, h := range s.Hosts() {
		t.Run(h.Name, func(t *testing.T) {
			if len(h.HostSigners) != len(HostKeyTypes) {
				t.Fatalf("%d host keys, want %d", len(h.HostSigners), len(HostKeyTypes))
			}
			ed := h.HostSigners[ssh.KeyAlgoED25519].PublicKey()
			if h.HostKey != h.HostKeyOf(ssh.KeyAlgoED25519) || !bytes.Equal(h.HostSigner.PublicKey().Marshal(), ed.Marshal()) {
				t.Errorf("HostKey or HostSigner is not the Ed25519 key")
			}
			if rk, ok := h.HostSigners[ssh.KeyAlgoRSA].PublicKey().(ssh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey); !ok || rk.N.BitLen() != 3072 {
				t.Errorf("the RSA key is not of 3072 bits")
			}
			if ek, ok := h.HostSigners[ssh.KeyAlgoECDSA256].PublicKey().(ssh.CryptoPublicKey).CryptoPublicKey().(*ecdsa.PublicKey); !ok || ek.Curve != elliptic.P256() {
				t.Errorf("the ECDSA key is not on P-256")
			}
			for _, typ := range HostKeyTypes {
				got, err := presentedKey(t, s, h, algos[typ])
				if err != nil {
					t.Fatalf("asked for %s: %v", algos[typ], err)
				}
				if want := h.HostSigners[typ].PublicKey(); !bytes.Equal(got.Marshal(), want.Marshal()) {
					t.Errorf("asked for %s, the host presented %s %s, not its own %s", algos[typ], got.Type(), ssh.FingerprintSHA256(got), ssh.FingerprintSHA256(want))
				}
				if !strings.Contains(string(s.KnownHostsOf(typ)), h.IP+" "+h.HostKeyOf(typ)+"\n") {
					t.Errorf("KnownHostsOf(%s) lacks the host's key", typ)
				}
			}
			if !strings.Contains(string(s.KnownHosts()), h.IP+" "+h.HostKey+"\n") {
				t.Errorf("KnownHosts lacks the host's Ed25519 key")
			}
		})
	}
}
