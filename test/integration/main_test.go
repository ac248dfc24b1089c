// Package integration drives the real kubectl against a real kube-apiserver
// with stargate-apiserver registered behind its aggregator. TestMain starts
// that world once for the whole package; see test/framework.
package integration

import (
	"context"
	"fmt"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/generated/clientset/versioned"
	"github.com/stargate-k8s/stargate/test/framework"
)

// dc is the namespace (datacenter) the fixtures live in.
const dc = "dc-it"

var (
	world *framework.World
	// client is the stargate clientset as the admin, through the kube-apiserver.
	client versioned.Interface
)

func TestMain(m *testing.M) {
	// STARGATE_APISERVER_BINARY runs a prebuilt server instead of building
	// ./cmd/apiserver from the working tree.
	os.Exit(framework.RunWithWorld(m, framework.WorldOptions{StargateBinary: os.Getenv("STARGATE_APISERVER_BINARY")},
		func(ctx context.Context, w *framework.World) error {
			world = w
			var err error
			if client, err = versioned.NewForConfig(w.ControlPlane.Config); err != nil {
				return err
			}
			if err := createFixtures(ctx); err != nil {
				return fmt.Errorf("create fixtures: %w", err)
			}
			return nil
		}))
}

// createFixtures makes the datacenter namespace, the profile's Secret, the
// ProvisioningProfile "default" and the Servers worker-1 and worker-2.
func createFixtures(ctx context.Context) error {
	kube := world.ControlPlane.Kube
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: dc}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ssh-admin", Namespace: dc},
		Type:       corev1.SecretTypeSSHAuth,
		Data:       map[string][]byte{corev1.SSHAuthPrivateKey: []byte("placeholder, not a key")},
	}
	if _, err := kube.CoreV1().Secrets(dc).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := client.StargateV1alpha1().ProvisioningProfiles(dc).Create(ctx, profile("default"), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create ProvisioningProfile default: %w", err)
	}
	for _, s := range []*v1alpha1.Server{server("worker-1", "10.50.1.11"), server("worker-2", "10.50.1.12")} {
		if _, err := client.StargateV1alpha1().Servers(dc).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create Server %s: %w", s.Name, err)
		}
	}
	return nil
}
