// Command images builds the container images of stargate-apiserver,
// stargate-controller and stargate-nodeagent (`make images`) without a
// container engine, a registry or a base image from outside: each image is
// a base layer made here (Debian's CA certificates, /etc/passwd and
// /etc/group with the user nonroot, 65532, and /tmp) and one layer with a
// static Go binary (CGO_ENABLED=0), run as 65532:65532.
//
// The build is reproducible: the same commit, Go toolchain and CA bundle
// give the same image digests. Binaries are built with -trimpath and
// without a build ID or VCS stamp; every timestamp (tar entries, the config's
// created, history) is SOURCE_DATE_EPOCH, by default the time of the last
// commit; tar entries are sorted, with fixed modes and owners; gzip writes
// no name or time.
//
// Each image is written as one archive, bin/images/stargate-NAME.tar, that
// is both an OCI image layout (oci-layout, index.json, blobs/sha256/...) and
// a docker-archive (manifest.json naming the same blobs), the form `docker
// save` writes since Docker 25: `ctr images import` reads the OCI layout and
// keeps the manifest digest printed here; `docker load`, `skopeo copy
// oci-archive:` or `docker-archive:` and `crane push` read it too. See
// docs/images.md.
//
// Only the Go standard library is used, so the main module needs no
// dependency for this build.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// components are the programs under cmd/ that get an image, in the order
// they are built and printed. The image of cmd/NAME is stargate-NAME.
var components = []string{"apiserver", "controller", "nodeagent"}

// The names the manifests in artifacts/ give the images:
// ghcr.io/stargate-k8s/stargate-NAME:latest (the controller's without a
// tag, which is latest too).
const (
	defaultRegistry = "ghcr.io/stargate-k8s"
	defaultTag      = "latest"
)

// options is what one run builds.
type options struct {
	root      string   // repository root (holds go.mod and cmd/)
	out       string   // directory for the archives
	registry  string   // e.g. ghcr.io/stargate-k8s
	tags      []string // e.g. latest
	names     []string // components to build, a subset of components
	caBundle  string   // PEM file copied to /etc/ssl/certs/ca-certificates.crt
	goCmd     string   // the go command
	arch      string   // GOARCH of the binaries and the image
	source    sourceInfo
	buildLogs *os.File // where go build's output goes
}

// sourceInfo describes the tree the images are built from. It goes into
// the image config (created, labels), so it must not change between two
// builds of the same commit.
type sourceInfo struct {
	epoch    time.Time // SOURCE_DATE_EPOCH
	revision string    // full commit hash, "" outside git
	version  string    // git describe --always --dirty, "" outside git
}

// builtImage is one image written to disk.
type builtImage struct {
	name    string   // stargate-apiserver
	refs    []string // ghcr.io/stargate-k8s/stargate-apiserver:latest
	digest  string   // sha256:... of the image manifest
	archive string   // path of the archive
	size    int64    // bytes of the archive
}

func main() {
	o := options{buildLogs: os.Stderr}
	var tags, names string
	flag.StringVar(&o.root, "root", ".", "the repository root: the directory that holds go.mod and cmd/")
	flag.StringVar(&o.out, "out", "bin/images", "directory the archives are written to, one stargate-NAME.tar per image, plus images.txt (REF@DIGEST per line)")
	flag.StringVar(&o.registry, "registry", defaultRegistry, "registry and path the image names start with; the manifests in artifacts/ name ghcr.io/stargate-k8s")
	flag.StringVar(&tags, "tags", defaultTag, "comma-separated tags each image gets (all in the same archive, one digest); the manifests in artifacts/ name latest")
	flag.StringVar(&names, "images", strings.Join(components, ","), "comma-separated programs of cmd/ to build images of")
	flag.StringVar(&o.caBundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle of CA certificates that becomes the image's /etc/ssl/certs/ca-certificates.crt (Debian's ca-certificates package)")
	flag.StringVar(&o.goCmd, "go", "go", "the go command")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "GOARCH of the binaries and of the images")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./hack/images [flags]\n\n"+
			"Builds the OCI images of stargate-apiserver, stargate-controller and stargate-nodeagent offline and\n"+
			"reproducibly (static binaries on a base of CA certificates and the user nonroot, 65532) and writes\n"+
			"each as an archive that ctr images import, docker load and skopeo read. Timestamps come from\n"+
			"SOURCE_DATE_EPOCH when set, else from the last commit. See docs/images.md.\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "images: unexpected arguments %q: everything is set with flags\n", flag.Args())
		os.Exit(2)
	}
	o.tags = splitList(tags)
	o.names = splitList(names)

	start := time.Now()
	var err error
	if o.source, err = readSource(o.root); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
	images, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
	for _, img := range images {
		for _, ref := range img.refs {
			fmt.Printf("%s@%s\t%s (%.1f MiB)\n", ref, img.digest, img.archive, float64(img.size)/(1<<20))
		}
	}
	fmt.Fprintf(os.Stderr, "built %d images in %s (SOURCE_DATE_EPOCH=%d, version %s)\n",
		len(images), time.Since(start).Round(100*time.Millisecond), o.source.epoch.Unix(), orNone(o.source.version))
}

// build compiles the binaries and writes one archive per image.
func build(o options) ([]builtImage, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(o.caBundle)
	if err != nil {
		return nil, fmt.Errorf("-ca-bundle %s: %w (install Debian's ca-certificates: apt-get install ca-certificates)", o.caBundle, err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("-ca-bundle %s: holds no PEM certificate", o.caBundle)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	bins, err := os.MkdirTemp(o.out, ".bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(bins)
	if err := buildBinaries(o, bins); err != nil {
		return nil, err
	}

	base, err := newLayer(baseFiles(ca), o.source.epoch)
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	baseHistory := fmt.Sprintf("base made by hack/images: /etc/ssl/certs/ca-certificates.crt (%s), /etc/passwd and /etc/group with nonroot 65532, /home/nonroot, /tmp", sha256Hex(ca)[:12])

	var images []builtImage
	for _, name := range o.names {
		img := "stargate-" + name
		bin, err := os.ReadFile(filepath.Join(bins, name))
		if err != nil {
			return nil, err
		}
		top, err := newLayer(binaryFiles(img, bin), o.source.epoch)
		if err != nil {
			return nil, fmt.Errorf("%s layer: %w", img, err)
		}
		cfg := imageConfig(img, o.arch, o.source, []*layer{base, top}, []string{
			baseHistory,
			fmt.Sprintf("%s: go build -trimpath -ldflags='-s -w -buildid=' ./cmd/%s with CGO_ENABLED=0, %s", binaryPath(img), name, goVersion(o)),
		})
		refs := make([]string, len(o.tags))
		for i, tag := range o.tags {
			refs[i] = o.registry + "/" + img + ":" + tag
		}
		path := filepath.Join(o.out, img+".tar")
		digest, size, err := writeArchive(path, cfg, []*layer{base, top}, refs, o.source.epoch)
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		images = append(images, builtImage{name: img, refs: refs, digest: digest, archive: path, size: size})
	}

	var list strings.Builder
	for _, img := range images {
		for _, ref := range img.refs {
			fmt.Fprintf(&list, "%s@%s\n", ref, img.digest)
		}
	}
	if err := os.WriteFile(filepath.Join(o.out, "images.txt"), []byte(list.String()), 0o644); err != nil {
		return nil, err
	}
	return images, nil
}

func (o options) validate() error {
	if len(o.tags) == 0 {
		return errors.New("-tags is empty: each image needs at least one tag")
	}
	for _, tag := range o.tags {
		if !validTag(tag) {
			return fmt.Errorf("-tags: %q is not a valid tag (up to 128 of [A-Za-z0-9_.-], not starting with . or -)", tag)
		}
	}
	if o.registry == "" || strings.HasSuffix(o.registry, "/") || strings.ToLower(o.registry) != o.registry {
		return fmt.Errorf("-registry %q: must be a lower-case registry and path without a trailing slash, e.g. ghcr.io/stargate-k8s", o.registry)
	}
	if len(o.names) == 0 {
		return errors.New("-images is empty")
	}
	for _, n := range o.names {
		known := false
		for _, c := range components {
			known = known || n == c
		}
		if !known {
			return fmt.Errorf("-images: %q is not one of %s", n, strings.Join(components, ", "))
		}
	}
	return nil
}

func validTag(tag string) bool {
	if tag == "" || len(tag) > 128 || tag[0] == '.' || tag[0] == '-' {
		return false
	}
	for _, r := range tag {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

// buildBinaries builds the static binaries of o.names into dir in one go
// build, so the packages they share compile once.
func buildBinaries(o options, dir string) error {
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", dir + string(filepath.Separator)}
	for _, n := range o.names {
		args = append(args, "./cmd/"+n)
	}
	cmd := exec.Command(o.goCmd, args...)
	cmd.Dir = o.root
	// GOFLAGS from the environment could add flags (-race, -cover, a
	// -ldflags) that change the binaries; the build sets all it needs.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.arch, "GOFLAGS=")
	cmd.Stdout, cmd.Stderr = o.buildLogs, o.buildLogs
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s in %s: %w", o.goCmd, strings.Join(args, " "), o.root, err)
	}
	return nil
}

// readSource finds the timestamp and version of the tree at root:
// SOURCE_DATE_EPOCH when set, else the committer time of HEAD.
func readSource(root string) (sourceInfo, error) {
	var s sourceInfo
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	s.revision, _ = git("rev-parse", "HEAD")
	if s.revision != "" {
		s.version, _ = git("describe", "--always", "--dirty", "--abbrev=12")
	}
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil || sec < 0 {
			return s, fmt.Errorf("SOURCE_DATE_EPOCH=%q: not a count of seconds since 1970", v)
		}
		s.epoch = time.Unix(sec, 0).UTC()
		return s, nil
	}
	ct, err := git("log", "-1", "--format=%ct", "HEAD")
	if err != nil || ct == "" {
		return s, fmt.Errorf("no SOURCE_DATE_EPOCH and %s is not a git checkout with a commit (git log: %v): set SOURCE_DATE_EPOCH", root, err)
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return s, fmt.Errorf("git log -1 --format=%%ct gave %q: %w", ct, err)
	}
	s.epoch = time.Unix(sec, 0).UTC()
	return s, nil
}

func goVersion(o options) string {
	cmd := exec.Command(o.goCmd, "env", "GOVERSION")
	cmd.Dir = o.root
	out, err := cmd.Output()
	if err != nil {
		return "go"
	}
	return strings.TrimSpace(string(out))
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
