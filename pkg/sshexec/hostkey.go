package sshexec

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyMismatchError says a host presented a key other than the one
// expected. No session was opened.
type HostKeyMismatchError struct {
	Host string
	// Expected are the SHA256 fingerprints that would have been accepted.
	Expected []string
	// Presented is the SHA256 fingerprint of the key the host presented,
	// or says that it has no key of a type that was expected.
	Presented string

	// accepted are the keys that would have been accepted; a connection
	// learns from them which host key algorithms to ask for (see
	// acceptedHostKeys).
	accepted []ssh.PublicKey
}

func (e *HostKeyMismatchError) Error() string {
	return fmt.Sprintf("host key of %s does not match: it presented %s, expected %s", e.Host, e.Presented, strings.Join(e.Expected, " or "))
}

// HostKeyUnknownError says no key is known for a host, so it cannot be
// verified. No session was opened.
type HostKeyUnknownError struct {
	Host      string
	Presented string
}

func (e *HostKeyUnknownError) Error() string {
	return fmt.Sprintf("no known host key for %s (it presented %s): pin spec.hostKey or add a known_hosts entry to the SSH credentials Secret", e.Host, e.Presented)
}

func mismatch(hostname, presented string, accepted []ssh.PublicKey) *HostKeyMismatchError {
	e := &HostKeyMismatchError{Host: hostname, Presented: presented, accepted: accepted}
	for _, k := range accepted {
		e.Expected = append(e.Expected, ssh.FingerprintSHA256(k))
	}
	return e
}

// PinnedHostKey accepts only the one key given in authorized_keys form.
func PinnedHostKey(authorizedKey string) (ssh.HostKeyCallback, error) {
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return nil, fmt.Errorf("parse pinned host key: %w", err)
	}
	wantBytes := want.Marshal()
	return func(hostname string, _ net.Addr, key ssh.PublicKey) error {
		if bytes.Equal(key.Marshal(), wantBytes) {
			return nil
		}
		return mismatch(hostname, ssh.FingerprintSHA256(key), []ssh.PublicKey{want})
	}, nil
}

type knownHost struct {
	patterns []string
	revoked  bool
	key      ssh.PublicKey
}

// parseKnownHosts parses known_hosts data into its entries, without the
// @cert-authority lines (host certificates are not supported).
func parseKnownHosts(data []byte) ([]knownHost, error) {
	var entries []knownHost
	rest := data
	for len(rest) > 0 {
		marker, hosts, key, _, r, err := ssh.ParseKnownHosts(rest)
		if err == io.EOF {
			// Only blank lines and comments were left.
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parse known_hosts: %w", err)
		}
		rest = r
		switch marker {
		case "":
		case "revoked":
		case "cert-authority":
			continue
		default:
			// OpenSSH skips such a line; a misspelt @revoked must not
			// make a key trusted, nor be dropped silently.
			return nil, fmt.Errorf("parse known_hosts: unknown marker @%s", marker)
		}
		entries = append(entries, knownHost{patterns: hosts, revoked: marker == "revoked", key: key})
	}
	return entries, nil
}

// KnownHosts accepts a host's key when a line of the known_hosts data
// names the host (plain, hashed "|1|" or with * and ? wildcards) with that
// key. A host listed with other keys only is a mismatch; a host not listed
// is unknown; a key marked @revoked for the host is refused wherever its
// line is.
func KnownHosts(data []byte) (ssh.HostKeyCallback, error) {
	entries, err := parseKnownHosts(data)
	if err != nil {
		return nil, err
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		names := []string{knownhosts.Normalize(hostname)}
		if remote != nil {
			if n := knownhosts.Normalize(remote.String()); n != names[0] {
				names = append(names, n)
			}
		}
		var accepted []ssh.PublicKey
		var revoked [][]byte
		for _, e := range entries {
			if !matchesAny(e.patterns, names) {
				continue
			}
			if e.revoked {
				revoked = append(revoked, e.key.Marshal())
			} else {
				accepted = append(accepted, e.key)
			}
		}
		isRevoked := func(k []byte) bool {
			return slices.ContainsFunc(revoked, func(r []byte) bool { return bytes.Equal(r, k) })
		}
		// Each key once, none that is revoked.
		var seen [][]byte
		accepted = slices.DeleteFunc(accepted, func(k ssh.PublicKey) bool {
			b := k.Marshal()
			if isRevoked(b) || slices.ContainsFunc(seen, func(s []byte) bool { return bytes.Equal(s, b) }) {
				return true
			}
			seen = append(seen, b)
			return false
		})
		presented := key.Marshal()
		if isRevoked(presented) {
			return &HostKeyMismatchError{Host: hostname, Presented: ssh.FingerprintSHA256(key), Expected: []string{"(presented key is @revoked)"}, accepted: accepted}
		}
		for _, k := range seen {
			if bytes.Equal(k, presented) {
				return nil
			}
		}
		if len(accepted) > 0 {
			return mismatch(hostname, ssh.FingerprintSHA256(key), accepted)
		}
		return &HostKeyUnknownError{Host: hostname, Presented: ssh.FingerprintSHA256(key)}
	}, nil
}

func matchesAny(patterns, names []string) bool {
	matched := false
	for _, p := range patterns {
		negated := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		for _, n := range names {
			if matchHost(p, n) {
				if negated {
					return false
				}
				matched = true
			}
		}
	}
	return matched
}

func matchHost(pattern, name string) bool {
	if strings.HasPrefix(pattern, "|1|") {
		parts := strings.Split(pattern[3:], "|")
		if len(parts) != 2 {
			return false
		}
		salt, err1 := base64.StdEncoding.DecodeString(parts[0])
		want, err2 := base64.StdEncoding.DecodeString(parts[1])
		if err1 != nil || err2 != nil {
			return false
		}
		m := hmac.New(sha1.New, salt)
		m.Write([]byte(name))
		return hmac.Equal(m.Sum(nil), want)
	}
	if pattern == name {
		return true
	}
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

// HostKeyCallback picks the verification for one host: the pinned key when
// set, else the known_hosts data.
func HostKeyCallback(pinned string, knownHostsData []byte) (ssh.HostKeyCallback, error) {
	if strings.TrimSpace(pinned) != "" {
		return PinnedHostKey(pinned)
	}
	return KnownHosts(knownHostsData)
}

// probeKey is a key no host has. Offered to a HostKeyCallback before a
// handshake, it is refused with the list of keys the callback accepts.
var probeKey = sync.OnceValue(func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	return k
})

// acceptedHostKeys returns the keys cb accepts for hostname, or nil when
// cb does not say. It offers cb probeKey: callbacks of this package and
// those of golang.org/x/crypto/ssh/knownhosts refuse it naming the keys
// they accept for the host.
//
// A connection asks the server for exactly the host key algorithms of
// these keys (algorithmsFor). A server with several host keys presents
// the one of the first algorithm in the client's list that it has a key
// for, and a stock Ubuntu host has RSA, ECDSA and Ed25519 keys; the
// library's default list puts ECDSA first, so a host pinned by its
// Ed25519 or RSA key would present its ECDSA key and fail verification
// although it has the pinned key.
func acceptedHostKeys(cb ssh.HostKeyCallback, hostname string, remote net.Addr) []ssh.PublicKey {
	probe := probeKey()
	if probe == nil {
		return nil
	}
	var keys []ssh.PublicKey
	err := cb(hostname, remote, probe)
	var mm *HostKeyMismatchError
	var ke *knownhosts.KeyError
	switch {
	case errors.As(err, &mm):
		keys = mm.accepted
	case errors.As(err, &ke):
		for _, k := range ke.Want {
			keys = append(keys, k.Key)
		}
	}
	return keys
}

// algorithmPreference orders the host key algorithms a connection asks
// for, as OpenSSH's ssh does; others come after these in the order of
// their keys.
var algorithmPreference = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256,
	ssh.KeyAlgoECDSA384,
	ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512,
	ssh.KeyAlgoRSASHA256,
}

// algorithmsFor returns the host key algorithms that can verify keys, each
// once, in order of preference; nil for no keys (the library's defaults).
func algorithmsFor(keys []ssh.PublicKey) []string {
	var algos []string
	for _, k := range keys {
		for _, a := range algorithmsForKey(k) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	rank := func(a string) int {
		if i := slices.Index(algorithmPreference, a); i >= 0 {
			return i
		}
		return len(algorithmPreference)
	}
	slices.SortStableFunc(algos, func(a, b string) int { return rank(a) - rank(b) })
	return algos
}

// algorithmsForKey returns the host key algorithms whose signatures k
// verifies.
func algorithmsForKey(k ssh.PublicKey) []string {
	switch t := k.Type(); t {
	case ssh.KeyAlgoRSA:
		// Not ssh-rsa (SHA-1 signatures): OpenSSH refuses it since 8.8.
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01}
	default:
		// The key's own type names its one algorithm: ssh-ed25519 and
		// ecdsa-sha2-nistp256/384/521 by curve.
		return []string{t}
	}
}
