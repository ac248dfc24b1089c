package sshexec

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Public keys of each type, in authorized_keys form, that no host has.
const (
	ed25519Key  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAQUNRGfbtFIeR4K6ONefOQmFWVHFXCFF4XXxs41nrTo"
	ecdsa256Key = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBM6S8zH+8+ns3vNAapEi3Xvxks7ROxg76DJBGj18/mRn7DD5Yl/tiVGIbOAFoO2+b7N4pDcJslRoKU+eSUyXn9g="
	ecdsa384Key = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBLNCeVaJKtU+RUVD5E0Om650utBJ6drb/H6IY1ZmqqVv788v0+8446CS8sDs5YxnimsGzZ+bq21XUXRZ8FCjQkiEPOIufNpzMA1WkiE0fn9JuiGN+t5813AilDEN2AQbyw=="
	ecdsa521Key = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAGPXW3/z3r+5fWVZwhr2NNFjMlMeuNdRH8xXyXJ0G0qLSuUlGgGW9YdUuKCLHU4BTSGu/dT7dLWW47I7GlByjH7jgDOPVpHGrkCIejWGu9YwZyWKfv0k+1RjczBMdgFYWM8s5/kNQkX55SD9sZwMK8IdOhPm6spyi+CFYHkh+BqOjwJIg=="
	rsaKey      = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCuSJKQEIAq+3BCPiTrXaGcCO8+Fw8NSk59oZRtyVOlNIthAIMUzcL67GWSjcy1CQ4lsGYNQplP9cnA+lt52DWg4Fz3AEnUTsALegiznpVbBfmgzpqKv78lRa/02HVpS5ms0TokV3ugY8loLI2gOrZY9dXo0Z1yGzT4Vz818gJ2YZNrw84c/kT88Y6/HeP0DEtqdAwwRBiHxl/9URYHiAVhqkTozq1OgZMlsPmi5hwjNHc5dJhJjNm6WpzjPrViR8AGXWTwYzWHMiwKSWfCbVUXyiSmXaeHGlyqulA2ZtOEFQkXYDc+g06UKQej7MNpR6yC8fmT688xMKt7qdxVKrVh"
)

func parseKey(t testing.TB, authorizedKey string) ssh.PublicKey {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A connection asks for exactly the host key algorithms that verify the
// keys its callback accepts for the host, so that a host with keys of
// several types presents one of those.
func TestHostKeyAlgorithmsOfAcceptedKeys(t *testing.T) {
	line := func(hosts, key string) string { return hosts + " " + key + "\n" }
	hashed := knownhosts.HashHostname("192.0.2.10")
	tests := []struct {
		name   string
		pinned string
		known  string
		host   string
		want   []string
	}{
		{name: "pinned Ed25519", pinned: ed25519Key, want: []string{"ssh-ed25519"}},
		{name: "pinned ECDSA P-256", pinned: ecdsa256Key, want: []string{"ecdsa-sha2-nistp256"}},
		{name: "pinned ECDSA P-384", pinned: ecdsa384Key, want: []string{"ecdsa-sha2-nistp384"}},
		{name: "pinned ECDSA P-521", pinned: ecdsa521Key, want: []string{"ecdsa-sha2-nistp521"}},
		// Never ssh-rsa: SHA-1 signatures, which OpenSSH refuses.
		{name: "pinned RSA", pinned: rsaKey, want: []string{"rsa-sha2-512", "rsa-sha2-256"}},
		{name: "pinned wins over known_hosts", pinned: rsaKey, known: line("192.0.2.10", ed25519Key), want: []string{"rsa-sha2-512", "rsa-sha2-256"}},
		{
			name:  "known_hosts: union of the host's entries, in order of preference",
			known: line("192.0.2.10", rsaKey) + line("192.0.2.11", ecdsa256Key) + line("192.0.2.10", ed25519Key),
			want:  []string{"ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"},
		},
		{
			name:  "known_hosts: hashed, wildcard and address lists",
			known: line(hashed, ecdsa384Key) + line("192.0.2.*", ed25519Key) + line("router,192.0.2.10", rsaKey),
			want:  []string{"ssh-ed25519", "ecdsa-sha2-nistp384", "rsa-sha2-512", "rsa-sha2-256"},
		},
		{
			name:  "known_hosts: each key once",
			known: line("192.0.2.10", ed25519Key) + line(hashed, ed25519Key),
			want:  []string{"ssh-ed25519"},
		},
		{
			name:  "known_hosts: negated pattern excludes the host",
			known: line("192.0.2.*,!192.0.2.10", ed25519Key) + line("192.0.2.10", ecdsa521Key),
			want:  []string{"ecdsa-sha2-nistp521"},
		},
		{
			name:  "known_hosts: a revoked key is not asked for",
			known: line("192.0.2.10", ed25519Key) + line("192.0.2.10", rsaKey) + "@revoked * " + ed25519Key + "\n",
			want:  []string{"rsa-sha2-512", "rsa-sha2-256"},
		},
		{
			name:  "known_hosts: another port is another host",
			known: line("192.0.2.10", ed25519Key) + line("[192.0.2.10]:2222", ecdsa256Key),
			host:  "192.0.2.10:2222",
			want:  []string{"ecdsa-sha2-nistp256"},
		},
		{name: "known_hosts: host not listed leaves the defaults", known: line("192.0.2.11", ed25519Key), want: nil},
		{name: "nothing known leaves the defaults", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb, err := HostKeyCallback(tt.pinned, []byte(tt.known))
			if err != nil {
				t.Fatal(err)
			}
			host := tt.host
			if host == "" {
				host = "192.0.2.10:22"
			}
			remote, _ := net.ResolveTCPAddr("tcp", host)
			got := algorithmsFor(acceptedHostKeys(cb, host, remote))
			if !slices.Equal(got, tt.want) {
				t.Errorf("host key algorithms %q, want %q", got, tt.want)
			}
		})
	}
}

// Callbacks from golang.org/x/crypto/ssh/knownhosts say which keys they
// accept too; other callbacks leave the library's defaults.
func TestHostKeyAlgorithmsOfOtherCallbacks(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	data := knownhosts.Line([]string{"192.0.2.10"}, parseKey(t, rsaKey)) + "\n" + knownhosts.Line([]string{"192.0.2.10"}, parseKey(t, ecdsa256Key)) + "\n"
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	kh, err := knownhosts.New(file)
	if err != nil {
		t.Fatal(err)
	}
	remote := &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 22}
	if got, want := algorithmsFor(acceptedHostKeys(kh, "192.0.2.10:22", remote)), []string{"ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256"}; !slices.Equal(got, want) {
		t.Errorf("knownhosts.New: host key algorithms %q, want %q", got, want)
	}
	for name, cb := range map[string]ssh.HostKeyCallback{
		"FixedHostKey":          ssh.FixedHostKey(parseKey(t, ed25519Key)),
		"InsecureIgnoreHostKey": ssh.InsecureIgnoreHostKey(),
	} {
		if got := algorithmsFor(acceptedHostKeys(cb, "192.0.2.10:22", remote)); got != nil {
			t.Errorf("%s: host key algorithms %q, want the defaults (nil)", name, got)
		}
	}
}

func FuzzPinnedHostKey(f *testing.F) {
	for _, k := range []string{ed25519Key, ecdsa256Key, ecdsa384Key, ecdsa521Key, rsaKey} {
		f.Add(k)
	}
	f.Add(ed25519Key + " root@host\n")
	f.Add("\n# comment\n" + "from=\"192.0.2.0/24\",no-pty " + rsaKey + " comment")
	f.Add("ssh-ed25519 AAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, pinned string) {
		cb, err := PinnedHostKey(pinned)
		if err != nil {
			return
		}
		want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pinned))
		if err != nil {
			t.Fatalf("PinnedHostKey took %q but it does not parse: %v", pinned, err)
		}
		if err := cb("192.0.2.10:22", nil, want); err != nil {
			t.Fatalf("the pinned key itself is refused: %v", err)
		}
		// The connection asks for exactly the algorithms of the pinned key.
		if got, wantAlgos := algorithmsFor(acceptedHostKeys(cb, "192.0.2.10:22", nil)), algorithmsForKey(want); !slices.Equal(got, wantAlgos) {
			t.Fatalf("host key algorithms %q, want %q", got, wantAlgos)
		}
		if slices.Contains(algorithmsForKey(want), ssh.KeyAlgoRSA) {
			t.Fatalf("asks for ssh-rsa (SHA-1) for a %s key", want.Type())
		}
		// Round trip: the key written out again pins the same key.
		again, err := PinnedHostKey(string(ssh.MarshalAuthorizedKey(want)))
		if err != nil {
			t.Fatalf("the pinned key written out does not parse: %v", err)
		}
		if err := again("192.0.2.10:22", nil, want); err != nil {
			t.Fatalf("the pinned key written out refuses the key: %v", err)
		}
		var mm *HostKeyMismatchError
		if err := again("192.0.2.10:22", nil, probeKey()); !errors.As(err, &mm) {
			t.Fatalf("the pinned key written out accepts another key: %v", err)
		}
	})
}

func FuzzKnownHosts(f *testing.F) {
	f.Add("192.0.2.10 "+ed25519Key+"\n192.0.2.10 "+rsaKey+"\n192.0.2.11 "+ecdsa256Key+"\n", "192.0.2.10:22")
	f.Add(knownhosts.HashHostname("192.0.2.10")+" "+ecdsa384Key+" comment\r\n# comment", "192.0.2.10:22")
	f.Add("192.0.2.*,!192.0.2.11 "+ecdsa521Key+"\n@revoked * "+ecdsa521Key+"\n", "192.0.2.10:22")
	f.Add("[192.0.2.10]:2222 "+ed25519Key+"\n@cert-authority *.example.com "+rsaKey+"\n", "192.0.2.10:2222")
	f.Add("@revoked 192.0.2.10 "+ed25519Key+"\n192.0.2.10 "+ed25519Key+"\n", "192.0.2.10")
	f.Add("@revokd 192.0.2.10 "+ed25519Key+"\n", "192.0.2.10:22")
	f.Add("192.0.2.10 ssh-rsa "+strings.Fields(ed25519Key)[1]+"\n", "192.0.2.10:22")
	f.Add("\n\n# only comments\n", "[::1]:22")
	f.Fuzz(func(t *testing.T, data, host string) {
		entries, err := parseKnownHosts([]byte(data))
		cb, cbErr := KnownHosts([]byte(data))
		if (err == nil) != (cbErr == nil) {
			t.Fatalf("parseKnownHosts: %v, KnownHosts: %v", err, cbErr)
		}
		if err != nil {
			return
		}

		// Round trip: the entries written out again parse to the same
		// entries.
		var b strings.Builder
		for _, e := range entries {
			if e.revoked {
				b.WriteString("@revoked ")
			}
			b.WriteString(strings.Join(e.patterns, ",") + " ")
			b.Write(ssh.MarshalAuthorizedKey(e.key))
		}
		again, err := parseKnownHosts([]byte(b.String()))
		if err != nil {
			t.Fatalf("entries written out do not parse: %v\n%s", err, b.String())
		}
		if !slices.EqualFunc(entries, again, func(a, b knownHost) bool {
			return a.revoked == b.revoked && slices.Equal(a.patterns, b.patterns) && bytes.Equal(a.key.Marshal(), b.key.Marshal())
		}) {
			t.Fatalf("entries written out parse differently:\n%s", b.String())
		}

		// The connection asks for exactly the algorithms of the keys the
		// callback accepts for the host, each once; a revoked key is
		// never accepted.
		var want []string
		for _, e := range entries {
			err := cb(host, nil, e.key)
			if e.revoked && matchesAny(e.patterns, []string{knownhosts.Normalize(host)}) && err == nil {
				t.Fatalf("key revoked for %q accepted", host)
			}
			if err != nil {
				continue
			}
			for _, a := range algorithmsForKey(e.key) {
				if !slices.Contains(want, a) {
					want = append(want, a)
				}
			}
		}
		got := algorithmsFor(acceptedHostKeys(cb, host, nil))
		if len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) {
			t.Fatalf("host key algorithms %q repeat one", got)
		}
		slices.Sort(want)
		if sorted := slices.Sorted(slices.Values(got)); !slices.Equal(sorted, want) {
			t.Fatalf("host key algorithms %q, want those of the accepted keys %q", got, want)
		}
		var mm *HostKeyMismatchError
		var uk *HostKeyUnknownError
		if err := cb(host, nil, probeKey()); (len(got) > 0 && !errors.As(err, &mm)) || (len(got) == 0 && !errors.As(err, &uk)) {
			t.Fatalf("a key no host has: %v (host key algorithms %q)", err, got)
		}
	})
}
