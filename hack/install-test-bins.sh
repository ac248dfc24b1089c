#!/usr/bin/env bash
# Builds the real control-plane programs that tests and `make dev` run:
# kube-apiserver, kube-controller-manager and kubectl from k8s.io/kubernetes
# and etcd from go.etcd.io/etcd/server/v3, at the versions that the tools
# module hack/tools/k8s names (kubernetes v1.37.2 with every staging module
# pinned to its v0.37.2 release, and etcd v3.7.0, the etcd that kubernetes
# itself requires). All four come from one go build in that one module, so the
# packages they share (gRPC, protobuf, the etcd client, Prometheus,
# OpenTelemetry) compile once. Everything comes from the Go module proxy; the
# results land in bin/ (ignored by git) and are reused while the stamp file
# says they are current.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/hack/tools/k8s"
bin="${STARGATE_BIN_DIR:-$root/bin}"
mkdir -p "$bin"

# required_version MODULE prints the version that the tools module's go.mod
# requires, in a require block or on a require line of its own.
required_version() {
  awk -v m="$1" '$1 == "require" && $2 == m { print $3; exit }
    $1 == m && $2 ~ /^v/ { print $2; exit }' "$tools/go.mod"
}
k8s_version=$(required_version k8s.io/kubernetes)
etcd_version=$(required_version go.etcd.io/etcd/server/v3)
if [[ -z "$k8s_version" || -z "$etcd_version" ]]; then
  echo "$tools/go.mod must require k8s.io/kubernetes and go.etcd.io/etcd/server/v3" >&2
  exit 1
fi
# The stamp names the versions and holds a hash of the tools module's go.mod
# and go.sum, so that any change to the module (a version, a replace)
# rebuilds, as does another Go.
module_sum=$(cat "$tools/go.mod" "$tools/go.sum" | sha256sum | cut -c1-16)
stamp="kubernetes=$k8s_version etcd=$etcd_version go=$(go env GOVERSION) module=$module_sum"

if [[ -f "$bin/.stamp" && "$(cat "$bin/.stamp")" == "$stamp" ]] &&
   [[ -x "$bin/kube-apiserver" && -x "$bin/kube-controller-manager" && -x "$bin/kubectl" && -x "$bin/etcd" ]]; then
  exit 0
fi

major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v*.}; minor=${minor%%.*}
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

# Build into a directory of its own inside bin/ and move the results into
# place one by one (a rename each), so that bin/ never holds a half-written
# binary, e.g. for a `make dev` that is running.
stage=$(mktemp -d "$bin/.build.XXXXXX")
trap 'rm -rf "$stage"' EXIT

echo "building kube-apiserver, kube-controller-manager, kubectl $k8s_version and etcd $etcd_version into $bin" \
  "(the first build takes many minutes)" >&2
(cd "$tools" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$stage/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl \
  go.etcd.io/etcd/server/v3)
# go build names a program after the last element of its package path, a
# major version suffix skipped: etcd's main package go.etcd.io/etcd/server/v3
# comes out as "server".
mv "$stage/server" "$stage/etcd"

got=$("$stage/kubectl" version --client -o json | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -n1)
if [[ "$got" != "$k8s_version" ]]; then
  echo "kubectl reports version '$got', want $k8s_version" >&2
  exit 1
fi
got=$("$stage/etcd" --version | sed -n 's/^etcd Version: *//p')
if [[ "v$got" != "$etcd_version" ]]; then
  echo "etcd reports version '$got', want $etcd_version" >&2
  exit 1
fi
for name in kube-apiserver kube-controller-manager kubectl etcd; do
  mv -f "$stage/$name" "$bin/$name"
done
echo "$stamp" > "$bin/.stamp"
