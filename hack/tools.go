//go:build tools

// Package hack pins the code generators in go.mod, so hack/update-codegen.sh
// runs the version the module names. Behind the build tag nothing here is
// built, so go build and go test never download these modules: the scripts
// find their directories with gomod::dir (hack/lib/gomod.sh), which does.
package hack

import (
	_ "k8s.io/code-generator"
	_ "k8s.io/kube-openapi/cmd/openapi-gen"
)
