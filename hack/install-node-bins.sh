#!/usr/bin/env bash
# Builds the programs of the real test nodes (test/framework/nodes, test/realnodes):
# kubelet, kube-proxy and kube-scheduler from k8s.io/kubernetes at the version
# that the tools module hack/tools/k8s names (the same module and replace
# block as kube-apiserver, which hack/install-test-bins.sh builds), and
# containerd, containerd-shim-runc-v2 and ctr from the tools module
# hack/tools/containerd. runc and the CNI plugins are Debian packages
# (hack/install-deps.sh). Everything comes from the Go module proxy; the
# results land in bin/ (ignored by git) and are reused while the stamp file
# bin/.stamp-node says they are current. A separate script and stamp keep the
# control plane's build untouched: a test that needs no real node never
# waits for these.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
k8s_tools="$root/hack/tools/k8s"
ctr_tools="$root/hack/tools/containerd"
bin="${STARGATE_BIN_DIR:-$root/bin}"
mkdir -p "$bin"

# required_version GOMOD MODULE prints the version that GOMOD requires of
# MODULE, in a require block or on a require line of its own.
required_version() {
  awk -v m="$2" '$1 == "require" && $2 == m { print $3; exit }
    $1 == m && $2 ~ /^v/ { print $2; exit }' "$1"
}
k8s_version=$(required_version "$k8s_tools/go.mod" k8s.io/kubernetes)
containerd_version=$(required_version "$ctr_tools/go.mod" github.com/containerd/containerd/v2)
if [[ -z "$k8s_version" || -z "$containerd_version" ]]; then
  echo "$k8s_tools/go.mod must require k8s.io/kubernetes and" \
    "$ctr_tools/go.mod github.com/containerd/containerd/v2" >&2
  exit 1
fi
# The stamp names the versions and holds a hash of both tools modules, so
# that any change to either (a version, a replace) rebuilds, as does another Go.
module_sum=$(cat "$k8s_tools/go.mod" "$k8s_tools/go.sum" "$ctr_tools/go.mod" "$ctr_tools/go.sum" |
  sha256sum | cut -c1-16)
stamp="kubernetes=$k8s_version containerd=$containerd_version go=$(go env GOVERSION) module=$module_sum"
programs=(kubelet kube-proxy kube-scheduler containerd containerd-shim-runc-v2 ctr)

current=true
[[ -f "$bin/.stamp-node" && "$(cat "$bin/.stamp-node")" == "$stamp" ]] || current=false
for name in "${programs[@]}"; do
  [[ -x "$bin/$name" ]] || current=false
done
if $current; then
  exit 0
fi

major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v*.}; minor=${minor%%.*}
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
# containerd's own release builds set the version without the leading v; the
# kubelet reports it as the Node's containerRuntimeVersion (containerd://2.4.2).
ctr_ldflags="-X github.com/containerd/containerd/v2/version.Version=${containerd_version#v}"
ctr_ldflags+=" -X github.com/containerd/containerd/v2/version.Revision=$containerd_version"

# Build into a directory of its own inside bin/ and move the results into
# place one by one (a rename each), so that bin/ never holds a half-written
# binary.
stage=$(mktemp -d "$bin/.build-node.XXXXXX")
trap 'rm -rf "$stage"' EXIT

echo "building kubelet, kube-proxy, kube-scheduler $k8s_version and containerd $containerd_version into $bin" \
  "(the first build takes many minutes)" >&2
(cd "$k8s_tools" && CGO_ENABLED=0 go build -trimpath -ldflags "$k8s_ldflags" -o "$stage/" \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy \
  k8s.io/kubernetes/cmd/kube-scheduler)
# Without cgo, and without the btrfs, devmapper and ZFS snapshotters, which
# need cgo or kernel support the nodes never use: they run on overlayfs.
(cd "$ctr_tools" && CGO_ENABLED=0 go build -trimpath -tags "no_btrfs no_devmapper no_zfs" \
  -ldflags "$ctr_ldflags" -o "$stage/" \
  github.com/containerd/containerd/v2/cmd/containerd \
  github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
  github.com/containerd/containerd/v2/cmd/ctr)

got=$("$stage/kubelet" --version | sed -n 's/^Kubernetes //p')
if [[ "$got" != "$k8s_version" ]]; then
  echo "kubelet reports version '$got', want $k8s_version" >&2
  exit 1
fi
got=$("$stage/containerd" --version | awk '{ print $3 }')
if [[ "$got" != "${containerd_version#v}" ]]; then
  echo "containerd reports version '$got', want ${containerd_version#v}" >&2
  exit 1
fi
for name in "${programs[@]}"; do
  mv -f "$stage/$name" "$bin/$name"
done
echo "$stamp" > "$bin/.stamp-node"
