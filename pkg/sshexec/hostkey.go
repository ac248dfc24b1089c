package sshexec

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net"
	"path"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyMismatchError says a host presented a key other than the one
// expected. No session was opened.
type HostKeyMismatchError struct {
	Host string
	// Expected are the SHA256 fingerprints that would have been accepted.
	Expected []string
	// Presented is the SHA256 fingerprint of the key the host presented.
	Presented string
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

// PinnedHostKey accepts only the one key given in authorized_keys form.
func PinnedHostKey(authorizedKey string) (ssh.HostKeyCallback, error) {
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return nil, fmt.Errorf("parse pinned host key: %w", err)
	}
	return func(hostname string, _ net.Addr, key ssh.PublicKey) error {
		if bytes.Equal(key.Marshal(), want.Marshal()) {
			return nil
		}
		return &HostKeyMismatchError{Host: hostname, Expected: []string{ssh.FingerprintSHA256(want)}, Presented: ssh.FingerprintSHA256(key)}
	}, nil
}

type knownHost struct {
	patterns []string
	revoked  bool
	key      ssh.PublicKey
}

// KnownHosts accepts a host's key when a line of the known_hosts data
// names the host (plain, hashed "|1|" or with * and ? wildcards) with that
// key. A host listed with other keys only is a mismatch; a host not listed
// is unknown; a key marked @revoked is refused.
func KnownHosts(data []byte) (ssh.HostKeyCallback, error) {
	var entries []knownHost
	rest := data
	for len(bytes.TrimSpace(rest)) > 0 {
		marker, hosts, key, _, r, err := ssh.ParseKnownHosts(rest)
		if err != nil {
			return nil, fmt.Errorf("parse known_hosts: %w", err)
		}
		rest = r
		if marker == "cert-authority" {
			continue
		}
		entries = append(entries, knownHost{patterns: hosts, revoked: marker == "revoked", key: key})
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		names := []string{knownhosts.Normalize(hostname)}
		if remote != nil {
			if n := knownhosts.Normalize(remote.String()); n != names[0] {
				names = append(names, n)
			}
		}
		var expected []string
		for _, e := range entries {
			if !matchesAny(e.patterns, names) {
				continue
			}
			same := bytes.Equal(e.key.Marshal(), key.Marshal())
			if e.revoked {
				if same {
					return &HostKeyMismatchError{Host: hostname, Presented: ssh.FingerprintSHA256(key), Expected: []string{"(presented key is @revoked)"}}
				}
				continue
			}
			if same {
				return nil
			}
			expected = append(expected, ssh.FingerprintSHA256(e.key))
		}
		if len(expected) > 0 {
			return &HostKeyMismatchError{Host: hostname, Expected: expected, Presented: ssh.FingerprintSHA256(key)}
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
