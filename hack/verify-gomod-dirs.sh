#!/usr/bin/env bash
# Fails when a script in hack/ finds a Go module's directory without
# downloading the module first. Such a script works on a machine whose module
# cache happens to hold the module and fails on a new one (issue 9:
# update-codegen.sh's "/kube_codegen.sh: No such file or directory").
# 1. No script but hack/lib/gomod.sh may resolve a module directory itself
#    (go list's .Dir template, or "Dir" read from go mod download -json, or a
#    path built from go env GOMODCACHE): the others call gomod::dir.
# 2. hack/update-codegen.sh --resolve-only must find every file it reads from
#    a module in a new, empty module cache.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
status=0

# 1. The patterns are spelled so that they do not match this file.
scripts=()
for f in hack/*.sh hack/lib/*.sh .ci/run Makefile; do
  case "$f" in
    hack/lib/gomod.sh | hack/verify-gomod-dirs.sh) ;;
    *) scripts+=("$f") ;;
  esac
done
if grep -nE '\{\{[[:space:]]*\.Dir[[:space:]]*\}\}|"Dir"[[:space:]]*:|go env GOMODCACHE' "${scripts[@]}" >&2; then
  echo "these lines resolve a Go module's directory, which is empty when the module is not downloaded yet;" \
    "source hack/lib/gomod.sh and use dir=\$(gomod::dir MODULE) instead" >&2
  status=1
fi

# 2. An empty module cache, as on a new machine. -modcacherw leaves the
# downloaded files writable, so the directory can be removed afterwards. The
# go command is the toolchain that runs now (GOTOOLCHAIN=local on its own
# GOROOT), so a toolchain that the go command switched to is not downloaded
# again into the empty cache.
modcache=$(mktemp -d)
trap 'rm -rf "$modcache"' EXIT
goroot=$(go env GOROOT)
if ! out=$(PATH="$goroot/bin:$PATH" GOTOOLCHAIN=local GOMODCACHE="$modcache" \
  GOFLAGS="$(go env GOFLAGS) -modcacherw" hack/update-codegen.sh --resolve-only); then
  echo "hack/update-codegen.sh --resolve-only failed on an empty module cache" >&2
  exit 1
fi
mapfile -t dirs <<<"$out"
want=(kube_codegen.sh pkg/apis/meta/v1/generated.proto gogoproto/gogo.proto)
for i in "${!want[@]}"; do
  dir=${dirs[$i]:-}
  if [[ "$dir" != "$modcache"/* || ! -f "$dir/${want[$i]}" ]]; then
    echo "hack/update-codegen.sh --resolve-only gave '$dir', which has no ${want[$i]} downloaded into the empty module cache" >&2
    status=1
  fi
done
if [[ $status -eq 0 ]]; then
  echo "hack/update-codegen.sh resolves its ${#dirs[@]} module directories on an empty module cache" >&2
fi
exit $status
