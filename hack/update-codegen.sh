#!/usr/bin/env bash
# Regenerates protobuf, deepcopy, conversion, defaulting and OpenAPI code for
# pkg/apis, and the clientset, listers, informers and apply configurations
# in pkg/generated, with the k8s.io/code-generator version go.mod names.
# The protobuf step needs protoc (apt-get install protobuf-compiler, or
# hack/install-deps.sh).
#
# With --resolve-only it only downloads the Go modules it reads files from
# (code-generator, apimachinery, gogo/protobuf), checks those files and prints
# the three directories: hack/verify-gomod-dirs.sh runs that on an empty
# module cache.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=hack/lib/gomod.sh
source "$root/hack/lib/gomod.sh"

resolve_only=false
case "${1:-}" in
  "") ;;
  --resolve-only) resolve_only=true ;;
  *) echo "usage: $0 [--resolve-only]" >&2; exit 2 ;;
esac

# resolve_module_dirs sets codegen_dir, apimachinery_dir and gogo_dir to the
# module directories this script reads files from, downloading the modules
# when they are not in the module cache (k8s.io/code-generator, for one, only
# hack/tools.go imports), and fails unless the files are there.
resolve_module_dirs() {
  codegen_dir=$(gomod::dir k8s.io/code-generator)
  apimachinery_dir=$(gomod::dir k8s.io/apimachinery)
  # gogo.proto at the version that code-generator's go.mod pins, as its
  # go-to-protobuf expects.
  gogo_dir=$(cd "$codegen_dir" && gomod::dir github.com/gogo/protobuf)
  local f
  for f in "$codegen_dir/kube_codegen.sh" \
    "$apimachinery_dir/pkg/apis/meta/v1/generated.proto" \
    "$gogo_dir/gogoproto/gogo.proto"; do
    if [[ ! -f "$f" ]]; then
      echo "$f not found in its downloaded Go module" >&2
      return 1
    fi
  done
}

resolve_module_dirs
if $resolve_only; then
  printf '%s\n' "$codegen_dir" "$apimachinery_dir" "$gogo_dir"
  exit 0
fi

module=$(go list -m)
# shellcheck source=/dev/null
source "$codegen_dir/kube_codegen.sh"

boilerplate="$root/hack/boilerplate.go.txt"

# gen_protobuf writes generated.proto and generated.pb.go, and the
# `protobuf:"..."` struct tags of types.go, for every package whose doc.go says
# +k8s:protobuf-gen=package, with code-generator's go-to-protobuf and
# protoc-gen-gogo, as kubernetes' hack/update-generated-protobuf does. It runs
# first, so the other generators see the struct tags.
# Temporary files and directories, removed on exit.
cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

gen_protobuf() {
  if ! command -v protoc >/dev/null; then
    echo "protoc not found: install it with 'apt-get install protobuf-compiler' (or run hack/install-deps.sh)" >&2
    return 1
  fi

  local pkgs=() dir
  while read -r dir; do
    pkgs+=("$module/${dir#./}")
  done < <(grep -rl --include doc.go -E '^\s*//\s*\+k8s:protobuf-gen=package' ./pkg/apis | xargs -r -n1 dirname | LC_ALL=C sort -u)
  if [[ ${#pkgs[@]} -eq 0 ]]; then
    return 0
  fi

  local tmp
  tmp=$(mktemp -d)
  cleanup+=("$tmp")

  # go-to-protobuf, protoc-gen-gogo and the goimports it runs, at the versions
  # code-generator's go.mod pins, built into a private bin dir.
  local tools_version
  tools_version=$(cd "$codegen_dir" && go list -m -f '{{.Version}}' golang.org/x/tools)
  (cd "$codegen_dir" && GOBIN="$tmp/bin" GO111MODULE=on go install \
    k8s.io/code-generator/cmd/go-to-protobuf \
    k8s.io/code-generator/cmd/go-to-protobuf/protoc-gen-gogo)
  GOBIN="$tmp/bin" GO111MODULE=on go install "golang.org/x/tools/cmd/goimports@$tools_version"

  # protoc is run on <output-dir>/<go import path>/generated.proto and resolves
  # imports by Go import path, so lay out a GOPATH-like tree: this module,
  # k8s.io/apimachinery (for meta/v1's generated.proto) and gogo.proto, from
  # the directories resolve_module_dirs found.
  local protoc_include
  protoc_include="$(dirname "$(command -v protoc)")/../include"
  if [[ ! -f "$protoc_include/google/protobuf/descriptor.proto" ]]; then
    echo "google/protobuf/descriptor.proto not found next to protoc: install it with 'apt-get install libprotobuf-dev' (or run hack/install-deps.sh)" >&2
    return 1
  fi
  mkdir -p "$tmp/src/$(dirname "$module")" "$tmp/src/k8s.io" "$tmp/src/github.com/gogo"
  ln -s "$root" "$tmp/src/$module"
  ln -s "$apimachinery_dir" "$tmp/src/k8s.io/apimachinery"
  ln -s "$gogo_dir" "$tmp/src/github.com/gogo/protobuf"

  # The apimachinery packages are read for the types the APIs use but not
  # generated ("-"): their protos come with k8s.io/apimachinery.
  local apimachinery_pkgs=(
    -k8s.io/apimachinery/pkg/util/intstr
    -k8s.io/apimachinery/pkg/api/resource
    -k8s.io/apimachinery/pkg/runtime/schema
    -k8s.io/apimachinery/pkg/runtime
    -k8s.io/apimachinery/pkg/apis/meta/v1
  )
  echo "Generating protobuf code for ${#pkgs[@]} targets"
  PATH="$tmp/bin:$PATH" "$tmp/bin/go-to-protobuf" \
    --go-header-file "$boilerplate" \
    --output-dir "$tmp/src" \
    --proto-import "$tmp/src" \
    --proto-import "$protoc_include" \
    --apimachinery-packages "$(IFS=,; echo "${apimachinery_pkgs[*]}")" \
    --packages "$(IFS=,; echo "${pkgs[*]}")" \
    --drop-gogo-go
}

gen_protobuf

kube::codegen::gen_helpers --boilerplate "$boilerplate" "$root/pkg/apis"

# intstr: ServerRollout's maxUnavailable is an IntOrString, whose model
# the API server needs to serve the OpenAPI of the group.
kube::codegen::gen_openapi \
  --extra-pkgs k8s.io/apimachinery/pkg/util/intstr \
  --output-dir "$root/pkg/generated/openapi" \
  --output-pkg "$module/pkg/generated/openapi" \
  --report-filename "$root/hack/api-rules-violations.list" \
  --update-report \
  --output-model-name-file zz_generated.model_name.go \
  --boilerplate "$boilerplate" \
  "$root/pkg/apis"

# The apply configurations learn the models' schema from the OpenAPI
# definitions just generated.
models_schema=$(mktemp)
cleanup+=("$models_schema")
go run ./hack/models-schema >"$models_schema"

kube::codegen::gen_client \
  --with-watch \
  --with-applyconfig \
  --applyconfig-openapi-schema "$models_schema" \
  --output-dir "$root/pkg/generated" \
  --output-pkg "$module/pkg/generated" \
  --boilerplate "$boilerplate" \
  "$root/pkg/apis"
