// Command models-schema prints the OpenAPI v2 definitions of every
// generated model as one Swagger document. hack/update-codegen.sh feeds it
// to applyconfiguration-gen, so the apply configurations' Extract
// functions know the schema of stargate.io types.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/stargate-k8s/stargate/pkg/generated/openapi"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "models-schema: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	ref := func(name string) spec.Ref { return spec.MustCreateRef("#/definitions/" + name) }
	defs := map[string]spec.Schema{}
	for name, def := range openapi.GetOpenAPIDefinitions(ref) {
		// Definitions that differ between v2 and v3 carry their v2 form
		// as an extension; the Swagger document wants that one.
		if v2, ok := def.Schema.Extensions[common.ExtensionV2Schema].(spec.Schema); ok {
			defs[name] = v2
			continue
		}
		defs[name] = def.Schema
	}
	doc := spec.Swagger{SwaggerProps: spec.SwaggerProps{
		Swagger:     "2.0",
		Info:        &spec.Info{InfoProps: spec.InfoProps{Title: "Stargate", Version: "unversioned"}},
		Definitions: defs,
	}}
	return json.NewEncoder(os.Stdout).Encode(&doc)
}
