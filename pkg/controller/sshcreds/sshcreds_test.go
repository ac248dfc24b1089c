package sshcreds

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"golang.org/x/crypto/ssh"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

func privateKeyPEM(t *testing.T) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(b)
}

// TestSecretShapes: the kubernetes.io/ssh-auth Secret and the original
// Stargate's Opaque Secret (privateKey, username) both give credentials;
// anything else fails with a reason and a message naming the Secret and
// the key, never the key's bytes.
func TestSecretShapes(t *testing.T) {
	key := privateKeyPEM(t)
	meta := metav1.ObjectMeta{Namespace: "dc-east", Name: "ssh"}
	for _, tc := range []struct {
		name     string
		secret   corev1.Secret
		user     string
		reason   string
		contains string
	}{
		{"ssh-auth", corev1.Secret{ObjectMeta: meta, Type: corev1.SecretTypeSSHAuth, Data: map[string][]byte{KeyPrivateKey: key}}, "ubuntu", "", ""},
		{"ssh-auth ignores a username key", corev1.Secret{ObjectMeta: meta, Type: corev1.SecretTypeSSHAuth, Data: map[string][]byte{KeyPrivateKey: key, LegacyKeyUsername: []byte("root")}}, "ubuntu", "", ""},
		{"original Opaque shape", corev1.Secret{ObjectMeta: meta, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{LegacyKeyPrivateKey: key, LegacyKeyUsername: []byte("azureuser")}}, "azureuser", "", ""},
		{"Opaque with ssh-privatekey", corev1.Secret{ObjectMeta: meta, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{KeyPrivateKey: key}}, "ubuntu", "", ""},
		{"TLS Secret", corev1.Secret{ObjectMeta: meta, Type: corev1.SecretTypeTLS, Data: map[string][]byte{KeyPrivateKey: key}}, "", stargate.ReasonCredentialsInvalid, `has type "kubernetes.io/tls"`},
		{"no key", corev1.Secret{ObjectMeta: meta, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"id_rsa": key}}, "", stargate.ReasonCredentialsInvalid, "has no key privateKey"},
		{"not a key", corev1.Secret{ObjectMeta: meta, Type: corev1.SecretTypeSSHAuth, Data: map[string][]byte{KeyPrivateKey: []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAsecretbytes\n")}}, "", stargate.ReasonCredentialsInvalid, "cannot be parsed"},
		{"bad known_hosts", corev1.Secret{ObjectMeta: meta, Type: corev1.SecretTypeSSHAuth, Data: map[string][]byte{KeyPrivateKey: key, KeyKnownHosts: []byte("router ssh-ed25519 !!!\n")}}, "", stargate.ReasonCredentialsInvalid, "key known_hosts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FromSecret(&tc.secret, "ubuntu")
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.User != tc.user || c.Signer == nil || c.Secret.String() != "dc-east/ssh" {
					t.Errorf("credentials = user %q signer %v secret %s, want user %q", c.User, c.Signer, c.Secret, tc.user)
				}
				return
			}
			e, ok := AsError(err)
			if !ok || e.Reason != tc.reason || !strings.Contains(e.Message, tc.contains) || !strings.Contains(e.Message, "dc-east/ssh") {
				t.Fatalf("error = %v, want reason %s with %q naming the Secret", err, tc.reason, tc.contains)
			}
			if strings.Contains(e.Message, "secretbytes") {
				t.Errorf("message holds the key's bytes: %s", e.Message)
			}
		})
	}
}
