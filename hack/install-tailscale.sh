#!/usr/bin/env bash
# Builds the real Tailscale programs of the test world into bin/: tailscaled
# and the tailscale CLI of the tailscale.com version that the tools module
# hack/tools/tailscale names (v1.102.5, the newest that builds with this
# project's Go), and that module's own tailcontrol (Tailscale's testcontrol
# with DERP, STUN and a REST API v2 on its state; see its package doc). One
# go build in that one module, so their shared packages compile once; the
# first build takes several minutes. Everything comes from the Go module
# proxy. The results are reused while bin/.stamp-tailscale says they are
# current.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/hack/tools/tailscale"
bin="${STARGATE_BIN_DIR:-$root/bin}"
mkdir -p "$bin"

ts_version=$(awk '$1 == "require" && $2 == "tailscale.com" { print $3; exit }
  $1 == "tailscale.com" && $2 ~ /^v/ { print $2; exit }' "$tools/go.mod")
if [[ -z "$ts_version" ]]; then
  echo "$tools/go.mod must require tailscale.com" >&2
  exit 1
fi
# The stamp names the version and holds a hash of the tools module's go.mod,
# go.sum and tailcontrol's source, so that any change to them rebuilds, as
# does another Go (the one the tools module runs with, which GOTOOLCHAIN=auto
# may pick by its go line).
module_sum=$(cat "$tools/go.mod" "$tools/go.sum" "$tools"/tailcontrol/*.go | sha256sum | cut -c1-16)
stamp="tailscale=$ts_version go=$(cd "$tools" && go env GOVERSION) module=$module_sum"
names=(tailscaled tailscale tailcontrol)

current=true
for name in "${names[@]}"; do
  [[ -x "$bin/$name" ]] || current=false
done
if $current && [[ -f "$bin/.stamp-tailscale" && "$(cat "$bin/.stamp-tailscale")" == "$stamp" ]]; then
  exit 0
fi

# Build into a directory of its own inside bin/ and move the results into
# place one by one (a rename each), so that bin/ never holds a half-written
# binary for a test that is running.
stage=$(mktemp -d "$bin/.build-tailscale.XXXXXX")
trap 'rm -rf "$stage"' EXIT

echo "building tailscaled and tailscale $ts_version and tailcontrol into $bin (the first build takes several minutes)" >&2
# The version stamps are what Tailscale's own build_dist.sh sets; without
# them a build from another module reports 1.102.5-ERR-BuildInfo.
ldflags="-s -w -X tailscale.com/version.longStamp=${ts_version#v} -X tailscale.com/version.shortStamp=${ts_version#v}"
(cd "$tools" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$stage/" \
  tailscale.com/cmd/tailscaled \
  tailscale.com/cmd/tailscale \
  ./tailcontrol)

# tailscale version prints the short version (1.102.5) on its first line.
got=$("$stage/tailscale" version | head -n1)
if [[ "v$got" != "$ts_version" ]]; then
  echo "tailscale reports version '$got', want $ts_version" >&2
  exit 1
fi
for name in "${names[@]}"; do
  mv -f "$stage/$name" "$bin/$name"
done
echo "$stamp" > "$bin/.stamp-tailscale"
