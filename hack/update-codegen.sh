#!/usr/bin/env bash
# Regenerates deepcopy, conversion, defaulting and OpenAPI code for
# pkg/apis, and the clientset, listers, informers and apply configurations
# in pkg/generated, with the k8s.io/code-generator version go.mod names.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
module=$(go list -m)
codegen_dir=$(go list -m -f '{{.Dir}}' k8s.io/code-generator)
# shellcheck source=/dev/null
source "$codegen_dir/kube_codegen.sh"

boilerplate="$root/hack/boilerplate.go.txt"

kube::codegen::gen_helpers --boilerplate "$boilerplate" "$root/pkg/apis"

kube::codegen::gen_openapi \
  --output-dir "$root/pkg/generated/openapi" \
  --output-pkg "$module/pkg/generated/openapi" \
  --report-filename "$root/hack/api-rules-violations.list" \
  --update-report \
  --boilerplate "$boilerplate" \
  "$root/pkg/apis"

kube::codegen::gen_client \
  --with-watch \
  --with-applyconfig \
  --output-dir "$root/pkg/generated" \
  --output-pkg "$module/pkg/generated" \
  --boilerplate "$boilerplate" \
  "$root/pkg/apis"
