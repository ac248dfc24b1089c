#!/usr/bin/env bash
# Builds the real control-plane programs that tests and `make dev` run:
# kube-apiserver, kube-controller-manager and kubectl from k8s.io/kubernetes
# v1.37.2 (through the tools module in hack/tools/k8s, which pins every
# staging module to its v0.37.2 release) and etcd from go.etcd.io/etcd/server/v3.
# Everything comes from the Go module proxy; the results land in bin/ (ignored
# by git) and are reused while the stamp file says they are current.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="${STARGATE_BIN_DIR:-$root/bin}"
mkdir -p "$bin"

k8s_version=v1.37.2
etcd_version=$(awk '$1=="require" && $2=="go.etcd.io/etcd/server/v3" {print $3}' "$root/hack/tools/etcd/go.mod")
stamp="kubernetes=$k8s_version etcd=$etcd_version go=$(go env GOVERSION)"

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

echo "building kube-apiserver, kube-controller-manager, kubectl $k8s_version into $bin (first build takes minutes)" >&2
(cd "$root/hack/tools/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl)

echo "building etcd $etcd_version into $bin" >&2
(cd "$root/hack/tools/etcd" && CGO_ENABLED=0 go build -trimpath -o "$bin/etcd" go.etcd.io/etcd/server/v3)

got=$("$bin/kubectl" version --client -o json | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -n1)
if [[ "$got" != "$k8s_version" ]]; then
  echo "kubectl reports version '$got', want $k8s_version" >&2
  exit 1
fi
echo "$stamp" > "$bin/.stamp"
