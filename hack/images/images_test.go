package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

const repoRoot = "../.."

// TestImagesAreReproducibleAndMinimal builds the three images twice, into
// two directories, and requires the same manifest digests and byte-identical
// archives; then it opens each archive as ctr and docker would and checks
// that the image is what docs/images.md promises: blobs match their
// digests, the OCI index and the docker manifest.json name the same image
// with the manifests' tag, it runs as 65532:65532 with the binary as its
// entrypoint, it holds exactly the base files, the CA bundle and the
// binary (no shell, no libc), and the binary is static and runs.
func TestImagesAreReproducibleAndMinimal(t *testing.T) {
	src, err := readSource(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	// Both builds get the same source description, read once, so that a
	// file another checkout user saves between them cannot flip the
	// version label; the binaries are built from the tree both times.
	o := options{
		root: repoRoot, registry: defaultRegistry, tags: []string{defaultTag}, names: components,
		caBundle: "/etc/ssl/certs/ca-certificates.crt", goCmd: "go", arch: runtime.GOARCH,
		source: src, buildLogs: os.Stderr,
	}
	dir := t.TempDir()
	var builds [2][]builtImage
	for i := range builds {
		o.out = filepath.Join(dir, []string{"first", "second"}[i])
		start := time.Now()
		if builds[i], err = build(o); err != nil {
			t.Fatalf("build %d: %v", i+1, err)
		}
		t.Logf("build %d of %d images took %s", i+1, len(builds[i]), time.Since(start).Round(100*time.Millisecond))
	}
	if len(builds[0]) != len(components) || len(builds[1]) != len(components) {
		t.Fatalf("built %d and %d images, want %d each", len(builds[0]), len(builds[1]), len(components))
	}
	for i, first := range builds[0] {
		second := builds[1][i]
		if first.digest != second.digest {
			t.Errorf("%s: the first build has digest %s, the second %s: the build is not reproducible", first.name, first.digest, second.digest)
		}
		if a, b := fileSHA256(t, first.archive), fileSHA256(t, second.archive); a != b {
			t.Errorf("%s: the archives differ (sha256 %s and %s)", first.name, a, b)
		}
		t.Logf("%s@%s (%d bytes) twice", first.refs[0], first.digest, first.size)
	}

	ca, err := os.ReadFile(o.caBundle)
	if err != nil {
		t.Fatal(err)
	}
	for i, img := range builds[0] {
		t.Run(img.name, func(t *testing.T) {
			checkImage(t, img, components[i], src.epoch, ca)
		})
	}
}

// TestImagesCarryTheNamesTheManifestsUse reads every image: line of
// artifacts/ and requires that it names one of the images `make images`
// builds, with the tag it gives them, and that every image is deployed by
// some manifest.
func TestImagesCarryTheNamesTheManifestsUse(t *testing.T) {
	built := map[string]bool{}
	for _, c := range components {
		built[defaultRegistry+"/stargate-"+c+":"+defaultTag] = false
	}
	err := filepath.WalkDir(filepath.Join(repoRoot, "artifacts"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for line := 1; s.Scan(); line++ {
			text := strings.TrimSpace(s.Text())
			if strings.HasPrefix(text, "#") || !strings.HasPrefix(strings.TrimPrefix(text, "- "), "image:") {
				continue
			}
			ref := strings.Trim(strings.TrimSpace(strings.SplitN(text, "image:", 2)[1]), `"'`)
			if !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") {
				ref += ":latest" // no tag means latest
			}
			if _, ok := built[ref]; !ok {
				t.Errorf("%s:%d names image %s, which make images does not build (it builds %s)", path, line, ref, keys(built))
				continue
			}
			built[ref] = true
		}
		return s.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	for ref, used := range built {
		if !used {
			t.Errorf("no manifest in artifacts/ deploys %s", ref)
		}
	}
}

func checkImage(t *testing.T, img builtImage, component string, epoch time.Time, ca []byte) {
	entries := readTar(t, img.archive)
	for name, e := range entries {
		if !e.modTime.Equal(epoch) {
			t.Errorf("archive entry %s has time %s, want SOURCE_DATE_EPOCH %s", name, e.modTime, epoch)
		}
		if d, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && d != "" && sha256Hex(e.data) != d {
			t.Errorf("blob %s holds content with sha256 %s", name, sha256Hex(e.data))
		}
	}
	if got := string(entry(t, entries, "oci-layout")); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %s", got)
	}

	// The OCI layout, which ctr images import reads.
	var index struct {
		MediaType string       `json:"mediaType"`
		Manifests []descriptor `json:"manifests"`
	}
	unmarshal(t, entry(t, entries, "index.json"), &index)
	if index.MediaType != mediaTypeIndex || len(index.Manifests) != len(img.refs) {
		t.Fatalf("index.json: media type %q with %d manifests, want %q with %d", index.MediaType, len(index.Manifests), mediaTypeIndex, len(img.refs))
	}
	for i, m := range index.Manifests {
		if m.Digest != img.digest || m.MediaType != mediaTypeManifest {
			t.Errorf("index.json manifest %d: %s %s, want %s %s", i, m.MediaType, m.Digest, mediaTypeManifest, img.digest)
		}
		if name := m.Annotations["io.containerd.image.name"]; name != img.refs[i] {
			t.Errorf("index.json manifest %d: io.containerd.image.name %q, want %q", i, name, img.refs[i])
		}
		if tag := m.Annotations["org.opencontainers.image.ref.name"]; tag != defaultTag {
			t.Errorf("index.json manifest %d: org.opencontainers.image.ref.name %q, want %q", i, tag, defaultTag)
		}
	}
	var manifest struct {
		MediaType string       `json:"mediaType"`
		Config    descriptor   `json:"config"`
		Layers    []descriptor `json:"layers"`
	}
	unmarshal(t, entry(t, entries, blobPath(img.digest)), &manifest)
	if manifest.MediaType != mediaTypeManifest || manifest.Config.MediaType != mediaTypeConfig || len(manifest.Layers) != 2 {
		t.Fatalf("manifest: %+v, want an OCI manifest with an OCI config and two layers", manifest)
	}
	for _, d := range append([]descriptor{manifest.Config}, manifest.Layers...) {
		if got := int64(len(entry(t, entries, blobPath(d.Digest)))); got != d.Size {
			t.Errorf("blob %s has %d bytes, the manifest says %d", d.Digest, got, d.Size)
		}
	}

	// manifest.json, which docker load reads: the same blobs and names.
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	unmarshal(t, entry(t, entries, "manifest.json"), &docker)
	wantLayers := []string{blobPath(manifest.Layers[0].Digest), blobPath(manifest.Layers[1].Digest)}
	if len(docker) != 1 || docker[0].Config != blobPath(manifest.Config.Digest) ||
		!reflect.DeepEqual(docker[0].RepoTags, img.refs) || !reflect.DeepEqual(docker[0].Layers, wantLayers) {
		t.Errorf("manifest.json = %+v, want config %s, tags %v, layers %v", docker, blobPath(manifest.Config.Digest), img.refs, wantLayers)
	}

	// The configuration.
	var cfg struct {
		Created      string `json:"created"`
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       struct {
			User       string
			Entrypoint []string
			Cmd        []string
			Env        []string
			Labels     map[string]string
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
		History []history `json:"history"`
	}
	unmarshal(t, entry(t, entries, blobPath(manifest.Config.Digest)), &cfg)
	bin := "/usr/local/bin/" + img.name
	if cfg.Config.User != "65532:65532" {
		t.Errorf("config user %q, want 65532:65532 (nonroot)", cfg.Config.User)
	}
	if !reflect.DeepEqual(cfg.Config.Entrypoint, []string{bin}) || cfg.Config.Cmd != nil {
		t.Errorf("config entrypoint %q cmd %q, want entrypoint [%s] and no cmd", cfg.Config.Entrypoint, cfg.Config.Cmd, bin)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("config platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
	}
	if cfg.Created != epoch.UTC().Format(time.RFC3339) || len(cfg.History) != 2 {
		t.Errorf("config created %q with %d history entries, want %s and 2", cfg.Created, len(cfg.History), epoch.UTC().Format(time.RFC3339))
	}
	if cfg.Config.Labels["org.opencontainers.image.title"] != img.name {
		t.Errorf("config labels %v lack org.opencontainers.image.title=%s", cfg.Config.Labels, img.name)
	}

	// The file system: exactly these entries, in two layers whose
	// uncompressed digests are the config's diff_ids.
	type want struct {
		mode     int64
		uid, gid int
	}
	wantFiles := map[string]want{
		"etc/": {0o755, 0, 0}, "etc/group": {0o644, 0, 0}, "etc/passwd": {0o644, 0, 0},
		"etc/ssl/": {0o755, 0, 0}, "etc/ssl/certs/": {0o755, 0, 0}, "etc/ssl/certs/ca-certificates.crt": {0o644, 0, 0},
		"home/": {0o755, 0, 0}, "home/nonroot/": {0o700, 65532, 65532}, "tmp/": {0o1777, 0, 0},
		"usr/": {0o755, 0, 0}, "usr/local/": {0o755, 0, 0}, "usr/local/bin/": {0o755, 0, 0},
		strings.TrimPrefix(bin, "/"): {0o755, 0, 0},
	}
	files := map[string]tarEntry{}
	for i, l := range manifest.Layers {
		if l.MediaType != mediaTypeLayer {
			t.Errorf("layer %d media type %q, want %q", i, l.MediaType, mediaTypeLayer)
		}
		zr, err := gzip.NewReader(bytes.NewReader(entry(t, entries, blobPath(l.Digest))))
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if i >= len(cfg.RootFS.DiffIDs) || "sha256:"+sha256Hex(raw) != cfg.RootFS.DiffIDs[i] {
			t.Errorf("layer %d uncompressed has sha256:%s, config diff_ids %v", i, sha256Hex(raw), cfg.RootFS.DiffIDs)
		}
		for name, e := range readTarBytes(t, raw) {
			files[name] = e
		}
	}
	for name, e := range files {
		w, ok := wantFiles[name]
		if !ok {
			t.Errorf("the image holds %s, which is not part of the minimal image", name)
			continue
		}
		if e.mode != w.mode || e.uid != w.uid || e.gid != w.gid {
			t.Errorf("%s: mode %o owner %d:%d, want mode %o owner %d:%d", name, e.mode, e.uid, e.gid, w.mode, w.uid, w.gid)
		}
		if !e.modTime.Equal(epoch) {
			t.Errorf("%s: time %s, want SOURCE_DATE_EPOCH %s", name, e.modTime, epoch)
		}
	}
	for name := range wantFiles {
		if _, ok := files[name]; !ok {
			t.Errorf("the image lacks %s", name)
		}
	}
	for _, shell := range []string{"bin/sh", "bin/bash", "bin/busybox", "usr/bin/env", "lib/", "lib64/"} {
		if _, ok := files[shell]; ok {
			t.Errorf("the image holds %s", shell)
		}
	}

	// The base: the CA bundle of this machine, and nonroot.
	if got := files["etc/ssl/certs/ca-certificates.crt"].data; !bytes.Equal(got, ca) {
		t.Errorf("/etc/ssl/certs/ca-certificates.crt differs from the bundle it was built from")
	} else if n := countCertificates(t, got); n < 1 {
		t.Errorf("/etc/ssl/certs/ca-certificates.crt holds no certificate")
	}
	if !strings.Contains(string(files["etc/passwd"].data), "\nnonroot:x:65532:65532:") ||
		!strings.Contains(string(files["etc/group"].data), "\nnonroot:x:65532:") {
		t.Errorf("/etc/passwd and /etc/group do not define nonroot 65532:\n%s%s", files["etc/passwd"].data, files["etc/group"].data)
	}

	// The binary: static, built as documented, and it runs.
	checkStaticBinary(t, files[strings.TrimPrefix(bin, "/")].data, component)
}

func checkStaticBinary(t *testing.T, data []byte, component string) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the binary is not ELF: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %s program header: it is dynamically linked", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) != 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	bi, err := buildinfo.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("build info: %v", err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" || settings["vcs.revision"] != "" {
		t.Errorf("build settings %v, want CGO_ENABLED=0, -trimpath=true and no VCS stamp", settings)
	}
	if bi.Path != "github.com/stargate-k8s/stargate/cmd/"+component {
		t.Errorf("the binary is %s, want cmd/%s", bi.Path, component)
	}
	if runtime.GOOS != "linux" {
		return
	}
	path := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--help").CombinedOutput()
	if !strings.Contains(string(out), "--") {
		t.Errorf("%s --help (%v) printed no flags: %s", component, err, out)
	}
}

type tarEntry struct {
	mode     int64
	uid, gid int
	modTime  time.Time
	data     []byte
}

func readTar(t *testing.T, path string) map[string]tarEntry {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return readTarBytes(t, data)
}

func readTarBytes(t *testing.T, data []byte) map[string]tarEntry {
	t.Helper()
	out := map[string]tarEntry{}
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeDir {
			t.Errorf("tar entry %s has type %q: only files and directories are expected", h.Name, h.Typeflag)
		}
		if _, dup := out[h.Name]; dup {
			t.Errorf("tar entry %s appears twice", h.Name)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		out[h.Name] = tarEntry{mode: h.Mode, uid: h.Uid, gid: h.Gid, modTime: h.ModTime, data: body}
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("tar entries are not sorted: %v", names)
	}
	return out
}

func entry(t *testing.T, entries map[string]tarEntry, name string) []byte {
	t.Helper()
	e, ok := entries[name]
	if !ok {
		t.Fatalf("the archive has no %s", name)
	}
	return e.data
}

func unmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%v in %s", err, data)
	}
}

func countCertificates(t *testing.T, data []byte) int {
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return n
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			t.Errorf("certificate %d of the CA bundle: %v", n+1, err)
		}
		n++
	}
}

func fileSHA256(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func keys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
