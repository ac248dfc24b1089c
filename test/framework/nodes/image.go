package nodes

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// Images the nodes hold from the start, built offline from one static
// program, netcheck (./test/framework/nodes/netcheck).
const (
	// SandboxImage is the pod sandbox ("pause") image containerd is
	// configured with (pinned_images.sandbox): netcheck pause.
	SandboxImage = "stargate.test/pause:local"
	// NetcheckImage runs netcheck; its binary is /netcheck, and the image
	// runs as root so that `netcheck ping` may open a raw ICMP socket. Use
	// it with imagePullPolicy Never.
	NetcheckImage = "stargate.test/netcheck:local"
)

// buildNodeImages builds netcheck and writes the sandbox and netcheck
// images as archives into dir; it returns their paths.
func buildNodeImages(ctx context.Context, repoRoot, dir string) ([]string, error) {
	bin := filepath.Join(dir, "netcheck")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./test/framework/nodes/netcheck")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./test/framework/nodes/netcheck: %w\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var archives []string
	for _, img := range []struct {
		ref        string
		entrypoint []string
	}{
		{SandboxImage, []string{"/netcheck", "pause"}},
		{NetcheckImage, []string{"/netcheck"}},
	} {
		archive, err := writeImage(dir, img.ref, img.entrypoint, map[string][]byte{"netcheck": data})
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", img.ref, err)
		}
		archives = append(archives, archive)
	}
	return archives, nil
}

// writeImage writes an OCI image layout archive of one uncompressed layer
// holding files (mode 0755, owned by root) under /, named ref, that `ctr
// images import` reads. (hack/images writes the project's release images
// the same way; it is a command, so this small writer is its own.)
func writeImage(dir, ref string, entrypoint []string, files map[string][]byte) (string, error) {
	epoch := time.Unix(0, 0).UTC()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return "", err
		}
		if _, err := tw.Write(data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Platform    map[string]string `json:"platform,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	digest := func(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }
	layerDigest := digest(layer.Bytes())
	cfg, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": entrypoint, "User": "0:0", "WorkingDir": "/"},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	if err != nil {
		return "", err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digest(cfg), Size: len(cfg)},
		"layers":        []desc{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: layerDigest, Size: layer.Len()}},
	})
	if err != nil {
		return "", err
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []desc{{
			MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest(manifest), Size: len(manifest),
			Platform:    map[string]string{"architecture": runtime.GOARCH, "os": "linux"},
			Annotations: map[string]string{"io.containerd.image.name": ref},
		}},
	})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, safeName(ref)+".tar")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	aw := tar.NewWriter(f)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"blobs/sha256/" + layerDigest[7:], layer.Bytes()},
		{"blobs/sha256/" + digest(cfg)[7:], cfg},
		{"blobs/sha256/" + digest(manifest)[7:], manifest},
	}
	for _, e := range entries {
		if err := aw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return "", err
		}
		if _, err := aw.Write(e.data); err != nil {
			return "", err
		}
	}
	if err := aw.Close(); err != nil {
		return "", err
	}
	return path, f.Close()
}

func safeName(ref string) string {
	b := []byte(ref)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}
