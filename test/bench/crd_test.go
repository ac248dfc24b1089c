package bench

import (
	"slices"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	generatedopenapi "github.com/stargate-k8s/stargate/pkg/generated/openapi"
)

// serverDefinition is the name of Server's OpenAPI definition: its model
// name where openapi-gen generated one, else its Go path.
func serverDefinition() string {
	if n, ok := any(v1alpha1.Server{}).(interface{ OpenAPIModelName() string }); ok {
		return n.OpenAPIModelName()
	}
	return "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1.Server"
}

// TestCRDMatchesServerSchema checks that the committed CRD has the same
// structure as the Server the aggregated server publishes: every field
// path, its type and which fields are required. When the Go types change,
// regenerate the manifest with `go generate ./test/bench`.
func TestCRDMatchesServerSchema(t *testing.T) {
	crd, err := CRD()
	if err != nil {
		t.Fatal(err)
	}
	if g, _, _ := unstructured.NestedString(crd.Object, "spec", "group"); g != CRDGroup {
		t.Errorf("CRD group is %q, want %q", g, CRDGroup)
	}
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if len(versions) != 1 {
		t.Fatalf("CRD has %d versions, want 1 (v1alpha1)", len(versions))
	}
	version := versions[0].(map[string]any)
	if _, ok, _ := unstructured.NestedMap(version, "subresources", "status"); !ok {
		t.Errorf("CRD version %v has no status subresource", version["name"])
	}
	crdSchema, _, _ := unstructured.NestedMap(version, "schema", "openAPIV3Schema")
	got := map[string]string{}
	walkCRD(crdSchema, "", got)

	defs := generatedopenapi.GetOpenAPIDefinitions(func(path string) spec.Ref { return spec.MustCreateRef(path) })
	want := map[string]string{}
	walkOpenAPI(defs, defs[serverDefinition()].Schema, "", want)

	if len(want) < 30 {
		t.Fatalf("walked only %d fields of the aggregated Server; the walk is broken", len(want))
	}
	if diff := diffFields(want, got); diff != "" {
		t.Errorf("CRD schema differs from the aggregated Server's OpenAPI (regenerate with `go generate ./test/bench`):\n%s", diff)
	}
}

// walkCRD records "type required=..." for every field path of a CRD schema.
func walkCRD(s map[string]any, path string, out map[string]string) {
	typ, _ := s["type"].(string)
	var req []string
	for _, r := range asSlice(s["required"]) {
		req = append(req, r.(string))
	}
	out[path] = describe(typ, req)
	if path == ".metadata" {
		return
	}
	for name, p := range asMap(s["properties"]) {
		walkCRD(p.(map[string]any), path+"."+name, out)
	}
	if items, ok := s["items"].(map[string]any); ok {
		walkCRD(items, path+"[]", out)
	}
}

// walkOpenAPI does what walkCRD does for the aggregated server's OpenAPI,
// following references; ObjectMeta is a plain object in a CRD and Time a
// date-time string, so they are leaves here too.
func walkOpenAPI(defs map[string]common.OpenAPIDefinition, s spec.Schema, path string, out map[string]string) {
	if ref := s.Ref.String(); ref != "" {
		switch ref {
		case metav1.ObjectMeta{}.OpenAPIModelName():
			out[path] = describe("object", nil)
			return
		case metav1.Time{}.OpenAPIModelName():
			out[path] = describe("string", nil)
			return
		}
		def, ok := defs[ref]
		if !ok {
			out[path] = "unresolved reference " + ref
			return
		}
		s = def.Schema
	}
	typ := ""
	if len(s.Type) > 0 {
		typ = s.Type[0]
	}
	out[path] = describe(typ, s.Required)
	for name, p := range s.Properties {
		walkOpenAPI(defs, p, path+"."+name, out)
	}
	if s.Items != nil && s.Items.Schema != nil {
		walkOpenAPI(defs, *s.Items.Schema, path+"[]", out)
	}
}

func describe(typ string, required []string) string {
	if len(required) == 0 {
		return typ
	}
	required = slices.Clone(required)
	sort.Strings(required)
	return typ + " required=" + strings.Join(required, ",")
}

func diffFields(want, got map[string]string) string {
	var lines []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			lines = append(lines, "missing in CRD: "+p+" ("+w+")")
		} else if g != w {
			lines = append(lines, "differs: "+p+": CRD "+g+", aggregated "+w)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			lines = append(lines, "only in CRD: "+p+" ("+g+")")
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }
func asSlice(v any) []any        { s, _ := v.([]any); return s }
