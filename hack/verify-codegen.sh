#!/usr/bin/env bash
# Fails when the committed generated code differs from what
# hack/update-codegen.sh makes of the current API types.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Generate in a copy of the tree, so the working tree is left as it is.
tar -C "$root" --exclude=./bin --exclude=./.git --exclude=./.dev -cf - . | tar -C "$tmp" -xf -
(cd "$tmp" && bash hack/update-codegen.sh >/dev/null)

status=0
for path in pkg/generated pkg/apis hack/api-rules-violations.list; do
  if ! diff -Nru "$root/$path" "$tmp/$path" >"$tmp/diff.txt"; then
    echo "generated code under $path is stale; run hack/update-codegen.sh and commit the result:" >&2
    head -n 40 "$tmp/diff.txt" >&2
    status=1
  fi
done
exit $status
