#!/usr/bin/env bash
# Regenerates protobuf, deepcopy, conversion, defaulting and OpenAPI code for
# pkg/apis, and the clientset, listers, informers and apply configurations
# in pkg/generated, with the k8s.io/code-generator version go.mod names.
# The protobuf step needs protoc (apt-get install protobuf-compiler, or
# hack/install-deps.sh).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
module=$(go list -m)
codegen_dir=$(go list -m -f '{{.Dir}}' k8s.io/code-generator)
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
  # k8s.io/apimachinery (for meta/v1's generated.proto) and gogo.proto.
  local apimachinery_dir gogo_dir protoc_include
  apimachinery_dir=$(go list -m -f '{{.Dir}}' k8s.io/apimachinery)
  gogo_dir=$(cd "$codegen_dir" && go mod download -json github.com/gogo/protobuf | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  protoc_include="$(dirname "$(command -v protoc)")/../include"
  if [[ -z "$gogo_dir" || ! -f "$gogo_dir/gogoproto/gogo.proto" ]]; then
    echo "gogo.proto not found in the github.com/gogo/protobuf module" >&2
    return 1
  fi
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

kube::codegen::gen_openapi \
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
