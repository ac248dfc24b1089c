# Stargate. `make help` lists the targets.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

GO ?= go
BIN := bin
# The integration tests start real control planes; the whole suite takes a
# few minutes, the timeout only catches hangs. -count=1: the integration
# tests build and run binaries (stargate-apiserver, stargate-controller)
# from the tree, which go test's cache cannot see, so a cached pass could
# hide a change to them.
TEST_TIMEOUT ?= 30m
TEST_FLAGS ?=
# Flags for hack/dev, e.g. `make dev DEV_FLAGS=-fresh`.
DEV_FLAGS ?=
# What `make images` names the images: REGISTRY/stargate-NAME:TAG for each
# comma-separated tag. The defaults are the names the manifests in
# artifacts/ use.
IMAGE_REGISTRY ?= ghcr.io/stargate-k8s
IMAGE_TAGS ?= latest
# The cilium module whose CiliumNode CRD the tests install (downloaded into
# the module cache only; test/framework/cilium.go names it).
CILIUM_VERSION := $(shell sed -n 's/^const CiliumVersion = "\(.*\)"/\1/p' test/framework/cilium.go)

.PHONY: all help build deps dev-deps test-bins dev test verify codegen images

all: build

help:
	@echo "make build      compile everything; binaries of cmd/* into $(BIN)/stargate-*"
	@echo "make deps       install what make test needs: Debian packages, Go modules, the binaries of test-bins, tailscaled/tailscale/tailcontrol (hack/install-tailscale.sh)"
	@echo "make test-bins  build kube-apiserver, kube-controller-manager, kubectl and etcd into $(BIN)/ (make deps also builds the real nodes' kubelet, kube-proxy, kube-scheduler and containerd: hack/install-node-bins.sh)"
	@echo "make images     build the images of stargate-apiserver, -controller and -nodeagent offline into $(BIN)/images/stargate-NAME.tar (docs/images.md)"
	@echo "make dev        run the control plane, stargate-apiserver and, as root, real nodes and stargate-controller with a simulated datacenter (state in .dev/)"
	@echo "make test       make deps, go test ./... against the real binaries, then the module-directory and generated-code checks"
	@echo "make verify     gofmt, go vet, the module-directory check and the generated-code check"
	@echo "make codegen    regenerate deepcopy, conversion, OpenAPI and the clientset"
	@echo "make fuzz       run each Go fuzz target (func FuzzXxx) under pkg/ for FUZZTIME (default 30s); make test runs only their seeds"

build:
	$(GO) build ./...
	for dir in cmd/*/; do \
	  name=$$(basename "$$dir"); \
	  $(GO) build -o $(BIN)/stargate-$$name ./cmd/$$name; \
	done

# The container images, built without a container engine or registry from
# static binaries on a base made here (CA certificates, the user nonroot),
# reproducibly: the same commit gives the same digests. Each archive loads
# with ctr images import and docker load; docs/images.md says how to push.
images:
	$(GO) run ./hack/images -out $(BIN)/images -registry $(IMAGE_REGISTRY) -tags $(IMAGE_TAGS)

# What `make test` needs beyond Go, installed when missing; when nothing is,
# these steps take well under a second. The Debian packages (sshd, iproute2,
# shellcheck, protoc) need root or sudo. `go mod download` fetches every
# module go.mod names, the code generators that only hack/tools.go imports
# included, which go build and go test never fetch.
deps:
	hack/install-deps.sh
	$(GO) mod download
	$(GO) mod download github.com/cilium/cilium@$(CILIUM_VERSION)
	hack/install-test-bins.sh
	hack/install-node-bins.sh
	hack/install-tailscale.sh

# `make dev` without root runs the API only, which needs no Debian packages:
# a package that cannot be installed is a warning there.
dev-deps:
	hack/install-deps.sh --best-effort
	hack/install-test-bins.sh
	hack/install-node-bins.sh
	hack/install-tailscale.sh

test-bins:
	hack/install-test-bins.sh

dev: dev-deps
	$(GO) build -o $(BIN)/stargate-dev ./hack/dev
	$(BIN)/stargate-dev $(DEV_FLAGS)

# The images first: test/realnodes deploys artifacts/ from them, and an
# archive left by an older commit would test old code.
test: deps images
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) ./...
	hack/verify-gomod-dirs.sh
	hack/verify-codegen.sh

verify:
	hack/install-deps.sh
	@unformatted=$$(gofmt -l .); \
	if [[ -n "$$unformatted" ]]; then \
	  echo "gofmt -w these files:" >&2; echo "$$unformatted" >&2; exit 1; \
	fi
	$(GO) vet ./...
	hack/verify-gomod-dirs.sh
	hack/verify-codegen.sh

codegen:
	hack/update-codegen.sh

# Go fuzzes one target of one package at a time, so the targets are found
# by their declaration and run one after the other. A failing input is
# kept under the package's testdata/fuzz/, where plain go test (and so
# make test) runs it from then on.
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz:
	targets=$$(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' pkg \
	  | sed -E 's#^(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*).*#./\1:\2#' | sort -u); \
	for t in $$targets; do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
	  $(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) "$$pkg"; \
	done
