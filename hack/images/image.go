package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The user every image runs as: nonroot, as in distroless. The manifests
// in artifacts/ set runAsUser and runAsGroup 65532 too.
const (
	nonrootUID = 65532
	nonrootGID = 65532
)

// Media types of the OCI image specification v1.1.
const (
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// file is one entry of a layer. Directories end in "/".
type file struct {
	path     string // relative, e.g. "etc/passwd" or "tmp/"
	mode     int64  // permission bits, with the sticky bit where wanted
	uid, gid int
	data     []byte
}

// binaryPath is where the program lives in its image; the entrypoint.
func binaryPath(image string) string { return "/usr/local/bin/" + image }

// baseFiles is the base layer: the CA bundle Go's crypto/x509 reads on
// Linux, the user and group nonroot, its home and a world-writable /tmp.
// No shell, no libc, no package database.
func baseFiles(ca []byte) []file {
	return []file{
		{path: "etc/", mode: 0o755},
		{path: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{path: "etc/passwd", mode: 0o644, data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{path: "etc/ssl/", mode: 0o755},
		{path: "etc/ssl/certs/", mode: 0o755},
		{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		{path: "home/", mode: 0o755},
		{path: "home/nonroot/", mode: 0o700, uid: nonrootUID, gid: nonrootGID},
		{path: "tmp/", mode: 0o1777},
	}
}

// binaryFiles is the layer of one program: the static binary, owned by
// root and not writable by the user it runs as.
func binaryFiles(image string, bin []byte) []file {
	return []file{
		{path: "usr/", mode: 0o755},
		{path: "usr/local/", mode: 0o755},
		{path: "usr/local/bin/", mode: 0o755},
		{path: strings.TrimPrefix(binaryPath(image), "/"), mode: 0o755, data: bin},
	}
}

// layer is a gzip-compressed tar and the digests an image names it by.
type layer struct {
	gz     []byte
	digest string // sha256 of gz
	diffID string // sha256 of the uncompressed tar
}

// newLayer writes files as a tar with sorted entries, each with the time
// epoch and the owner and mode of its file, and compresses it with gzip,
// which writes no file name or time of its own.
func newLayer(files []file, epoch time.Time) (*layer, error) {
	sorted := append([]file(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].path < sorted[j].path })
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, f := range sorted {
		h := &tar.Header{
			Name:    f.path,
			Mode:    f.mode,
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: epoch,
		}
		if strings.HasSuffix(f.path, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", f.path, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("%s: %w", f.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return &layer{gz: gz.Bytes(), digest: "sha256:" + sha256Hex(gz.Bytes()), diffID: "sha256:" + sha256Hex(raw.Bytes())}, nil
}

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// config is the part of the OCI image configuration these images use.
type config struct {
	Created      string `json:"created"`
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User       string            `json:"User"`
		Env        []string          `json:"Env"`
		Entrypoint []string          `json:"Entrypoint"`
		WorkingDir string            `json:"WorkingDir"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []history `json:"history"`
}

type history struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

func imageConfig(image, arch string, src sourceInfo, layers []*layer, historyLines []string) config {
	var c config
	created := src.epoch.UTC().Format(time.RFC3339)
	c.Created = created
	c.Architecture = arch
	c.OS = "linux"
	c.Config.User = fmt.Sprintf("%d:%d", nonrootUID, nonrootGID)
	c.Config.Env = []string{"PATH=/usr/local/bin"}
	c.Config.Entrypoint = []string{binaryPath(image)}
	c.Config.WorkingDir = "/"
	c.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   image,
		"org.opencontainers.image.source":  "https://github.com/stargate-k8s/stargate",
		"org.opencontainers.image.created": created,
	}
	if src.revision != "" {
		c.Config.Labels["org.opencontainers.image.revision"] = src.revision
	}
	if src.version != "" {
		c.Config.Labels["org.opencontainers.image.version"] = src.version
	}
	c.RootFS.Type = "layers"
	for _, l := range layers {
		c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, l.diffID)
	}
	for _, h := range historyLines {
		c.History = append(c.History, history{Created: created, CreatedBy: h})
	}
	return c
}

// writeArchive writes the image as a tar that is an OCI image layout and a
// docker-archive at once, and returns the manifest's digest and the
// archive's size. It writes a temporary file and renames it, so a reader
// never sees half an archive.
func writeArchive(path string, cfg config, layers []*layer, refs []string, epoch time.Time) (string, int64, error) {
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return "", 0, err
	}
	cfgDesc := descriptor{MediaType: mediaTypeConfig, Digest: "sha256:" + sha256Hex(cfgJSON), Size: int64(len(cfgJSON))}
	manifest := struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Config        descriptor   `json:"config"`
		Layers        []descriptor `json:"layers"`
	}{SchemaVersion: 2, MediaType: mediaTypeManifest, Config: cfgDesc}
	blobs := map[string][]byte{cfgDesc.Digest: cfgJSON}
	for _, l := range layers {
		manifest.Layers = append(manifest.Layers, descriptor{MediaType: mediaTypeLayer, Digest: l.digest, Size: int64(len(l.gz))})
		blobs[l.digest] = l.gz
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return "", 0, err
	}
	digest := "sha256:" + sha256Hex(manifestJSON)
	blobs[digest] = manifestJSON

	// index.json names the manifest once per reference: containerd takes
	// the image name from io.containerd.image.name, OCI tools the tag from
	// org.opencontainers.image.ref.name (as docker save writes them).
	index := struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}{SchemaVersion: 2, MediaType: mediaTypeIndex}
	for _, ref := range refs {
		index.Manifests = append(index.Manifests, descriptor{
			MediaType: mediaTypeManifest, Digest: digest, Size: int64(len(manifestJSON)),
			Annotations: map[string]string{
				"io.containerd.image.name":          ref,
				"org.opencontainers.image.ref.name": ref[strings.LastIndex(ref, ":")+1:],
			},
		})
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return "", 0, err
	}
	// manifest.json, for docker load before Docker 25 and docker-archive
	// readers: the same config and layer blobs.
	dockerManifest := []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: blobPath(cfgDesc.Digest), RepoTags: refs}}
	for _, l := range layers {
		dockerManifest[0].Layers = append(dockerManifest[0].Layers, blobPath(l.digest))
	}
	dockerJSON, err := json.Marshal(dockerManifest)
	if err != nil {
		return "", 0, err
	}

	files := []file{
		{path: "blobs/", mode: 0o755},
		{path: "blobs/sha256/", mode: 0o755},
		{path: "index.json", mode: 0o644, data: indexJSON},
		{path: "manifest.json", mode: 0o644, data: dockerJSON},
		{path: "oci-layout", mode: 0o644, data: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
	}
	for d, data := range blobs {
		files = append(files, file{path: blobPath(d), mode: 0o644, data: data})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	for _, f := range files {
		h := &tar.Header{Name: f.path, Mode: f.mode, ModTime: epoch, Typeflag: tar.TypeReg, Size: int64(len(f.data))}
		if strings.HasSuffix(f.path, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			tmp.Close()
			return "", 0, err
		}
		if _, err := tw.Write(f.data); err != nil {
			tmp.Close()
			return "", 0, err
		}
	}
	if err := tw.Close(); err != nil {
		tmp.Close()
		return "", 0, err
	}
	st, err := tmp.Stat()
	if err != nil {
		tmp.Close()
		return "", 0, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", 0, err
	}
	if err := tmp.Close(); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", 0, err
	}
	return digest, st.Size(), nil
}

func blobPath(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
