// Package sshcreds resolves what stargate-controller logs in to a
// datacenter's hosts with: the user and private key of the SSH Secret a
// ProvisioningProfile names, and the known_hosts that pins the hosts' keys.
// Every SSH client of the controller (the Operations on workers, the route
// advertiser on DC routers) gets its credentials here, so they read the
// same Secret shapes and fail with the same messages.
package sshcreds

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"golang.org/x/crypto/ssh"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/datacenter"
	"github.com/stargate-k8s/stargate/pkg/sshexec"
)

// Keys of the SSH credentials Secret.
const (
	// KeyPrivateKey holds the private key of a kubernetes.io/ssh-auth
	// Secret.
	KeyPrivateKey = corev1.SSHAuthPrivateKey
	// KeyKnownHosts holds known_hosts lines for the datacenter's router and
	// workers (a Server's spec.hostKey may pin a worker instead).
	KeyKnownHosts = "known_hosts"
	// LegacyKeyPrivateKey and LegacyKeyUsername are the keys of the
	// original Stargate's Opaque Secret; they are read as they were there.
	LegacyKeyPrivateKey = "privateKey"
	LegacyKeyUsername   = "username"
)

// Credentials are what one SSH login uses.
type Credentials struct {
	// Secret is the Secret they come from, for messages.
	Secret types.NamespacedName
	// User is the login user: the profile's spec.adminUsername, or the
	// username key of an original-shape Secret.
	User string
	// Signer authenticates with PrivateKey.
	Signer ssh.Signer
	// PrivateKey is the key as stored, so callers can redact it.
	PrivateKey []byte
	// KnownHosts is the Secret's known_hosts (may be empty when every
	// Server pins its own spec.hostKey and no router is used).
	KnownHosts []byte
}

// Error is a credentials problem that retrying does not fix; Reason is
// the Operation's failure reason.
type Error struct {
	Reason  string
	Message string
}

func (e *Error) Error() string { return e.Message }

func fail(reason, format string, args ...any) error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Get reads the SSH Secret profile names (spec.sshCredentialsSecretRef, in
// the profile's namespace) and parses it with FromSecret. Errors that
// retrying does not fix (no reference, no Secret, Forbidden, a bad key)
// are *Error; others (the API unavailable) are returned as they are.
func Get(ctx context.Context, r client.Reader, profile *v1.ProvisioningProfile) (*Credentials, error) {
	ref := profile.Spec.SSHCredentialsSecretRef
	if ref == nil || ref.Name == "" {
		return nil, fail(stargate.ReasonCredentialsNotFound, "ProvisioningProfile %s/%s names no SSH credentials Secret (spec.sshCredentialsSecretRef)", profile.Namespace, profile.Name)
	}
	var sec corev1.Secret
	if err := r.Get(ctx, types.NamespacedName{Namespace: profile.Namespace, Name: ref.Name}, &sec); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return nil, fail(stargate.ReasonCredentialsNotFound, "SSH credentials Secret %s/%s (ProvisioningProfile %s spec.sshCredentialsSecretRef) does not exist", profile.Namespace, ref.Name, profile.Name)
		case apierrors.IsForbidden(err):
			return nil, fail(stargate.ReasonCredentialsForbidden, "stargate-controller may not read the SSH credentials Secret %s/%s (ProvisioningProfile %s): %s: %v", profile.Namespace, ref.Name, profile.Name, datacenter.BindHint(profile.Namespace), err)
		}
		return nil, fmt.Errorf("read SSH credentials Secret %s/%s: %w", profile.Namespace, ref.Name, err)
	}
	return FromSecret(&sec, profile.Spec.AdminUsername)
}

// FromSecret parses an SSH credentials Secret: either a
// kubernetes.io/ssh-auth Secret (key ssh-privatekey), or the original
// Stargate's Opaque Secret (keys privateKey and, optionally, username,
// which then is the login user). Both may carry known_hosts. adminUser is
// the profile's spec.adminUsername.
func FromSecret(sec *corev1.Secret, adminUser string) (*Credentials, error) {
	c := &Credentials{Secret: types.NamespacedName{Namespace: sec.Namespace, Name: sec.Name}, User: adminUser}
	keyName := KeyPrivateKey
	switch sec.Type {
	case corev1.SecretTypeSSHAuth:
	case corev1.SecretTypeOpaque, "":
		if _, ok := sec.Data[KeyPrivateKey]; !ok {
			keyName = LegacyKeyPrivateKey
		}
		if u := string(sec.Data[LegacyKeyUsername]); u != "" {
			c.User = u
		}
	default:
		return nil, fail(stargate.ReasonCredentialsInvalid, "Secret %s/%s has type %q, want %s (key %s) or Opaque (key %s, as the original Stargate wrote it)",
			sec.Namespace, sec.Name, sec.Type, corev1.SecretTypeSSHAuth, KeyPrivateKey, LegacyKeyPrivateKey)
	}
	c.PrivateKey = sec.Data[keyName]
	if len(c.PrivateKey) == 0 {
		return nil, fail(stargate.ReasonCredentialsInvalid, "Secret %s/%s has no key %s", sec.Namespace, sec.Name, keyName)
	}
	signer, err := sshexec.ParsePrivateKey(c.PrivateKey)
	if err != nil {
		return nil, fail(stargate.ReasonCredentialsInvalid, "Secret %s/%s key %s: %v", sec.Namespace, sec.Name, keyName, err)
	}
	c.Signer = signer
	c.KnownHosts = sec.Data[KeyKnownHosts]
	if _, err := sshexec.KnownHosts(c.KnownHosts); err != nil {
		return nil, fail(stargate.ReasonCredentialsInvalid, "Secret %s/%s key %s: %v", sec.Namespace, sec.Name, KeyKnownHosts, err)
	}
	if c.User == "" {
		return nil, fail(stargate.ReasonCredentialsInvalid, "no login user: the ProvisioningProfile has no spec.adminUsername and Secret %s/%s no key %s", sec.Namespace, sec.Name, LegacyKeyUsername)
	}
	return c, nil
}

// ProfileOf names the ProvisioningProfile whose credentials reach Server
// s: its spec.provisioningProfileRef or, for a Server in the original
// Stargate's shape that names none, the profile of its last Operation
// (the one that repaved it). "" when it has neither.
func ProfileOf(ctx context.Context, r client.Reader, s *v1.Server) (string, error) {
	if ref := s.Spec.ProvisioningProfileRef; ref != nil && ref.Name != "" {
		return ref.Name, nil
	}
	if s.Status.LastOperation == "" {
		return "", nil
	}
	var op v1.Operation
	if err := r.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: s.Status.LastOperation}, &op); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("Operation %s/%s of Server %s: %w", s.Namespace, s.Status.LastOperation, s.Name, err)
	}
	// Only an Operation of this very Server lends its profile.
	if op.Spec.ServerRef.Name != s.Name {
		return "", nil
	}
	return op.Spec.ProvisioningProfileRef.Name, nil
}
