#!/usr/bin/env bash
# Sourced by the scripts in hack/, not run. The one way they find a Go
# module's directory: `go list -m -f` with .Dir prints nothing for a module
# that is not in the module cache yet, as on a new machine, and the script
# then fails far from the cause ("/kube_codegen.sh: No such file or
# directory"). A module that only hack/tools.go imports, behind a build tag,
# is never downloaded by go build or go test, so resolving has to download.
# hack/verify-gomod-dirs.sh fails when a script resolves a directory without
# this function.

# gomod::dir MODULE downloads MODULE at the version that the go.mod of the
# current directory selects (nothing to do when it is in the module cache
# already) and prints its directory. When the download fails (no network, the
# module proxy unreachable) it prints the go command's error and the command
# to run by hand, and exits. Call it as `dir=$(gomod::dir MODULE)` on a line
# of its own (not `local dir=$(...)`, which would hide the failure from
# set -e).
gomod::dir() {
  local module=$1 out status=0 dir err
  out=$(go mod download -json "$module" 2>&1) || status=$?
  # go mod download -json prints one JSON object with "Dir" on success and
  # "Error" on failure (and exits 1); its strings are JSON-escaped.
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$out")
  if [[ $status -eq 0 && -n "$dir" && -d "$dir" ]]; then
    printf '%s\n' "$dir"
    return 0
  fi
  err=$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$out" | sed 's/\\"/"/g')
  {
    echo "cannot download the Go module $module: ${err:-$out}"
    echo "check the network and GOPROXY ($(go env GOPROXY)), then try: (cd $PWD && go mod download $module)"
  } >&2
  exit 1
}
