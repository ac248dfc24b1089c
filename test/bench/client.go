package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// Media types the benchmark knows by a short name; -content-types also
// takes full media types.
var mediaTypes = map[string]string{
	"json":     "application/json",
	"protobuf": "application/vnd.kubernetes.protobuf",
	"cbor":     "application/cbor",
	"yaml":     "application/yaml",
}

// MediaType resolves a short content-type name.
func MediaType(name string) string {
	if mt, ok := mediaTypes[name]; ok {
		return mt
	}
	return name
}

// shortName is the inverse of MediaType, for tables.
func shortName(mediaType string) string {
	for n, mt := range mediaTypes {
		if mt == mediaType {
			return n
		}
	}
	return mediaType
}

// Side is one way of serving Servers: the aggregated API through
// kube-apiserver, the CRD, or stargate-apiserver called directly.
type Side struct {
	Name string
	// Via says what a request passes through.
	Via string
	// Group is the API group of the Servers.
	Group string
	// Namespace holds the measured objects; WarmNamespace the warm-up ones.
	Namespace, WarmNamespace string

	cfg *rest.Config
	// clients per media type (Accept); bodies say their own Content-Type.
	clients map[string]*rest.RESTClient
	// Offered says, per media type, whether GETs are answered in it.
	Offered map[string]bool
	// Probe says, per media type, what a probe GET and OpenAPI said.
	Probe map[string]string
	// ManagedFields is the number of managedFields entries, and ObjectBytes
	// the JSON size, of a Server read back after the writes.
	ManagedFields, ObjectBytes int
}

func (s *Side) client(mediaType string) (*rest.RESTClient, error) {
	if c, ok := s.clients[mediaType]; ok {
		return c, nil
	}
	cfg := rest.CopyConfig(s.cfg)
	cfg.GroupVersion = &schema.GroupVersion{Group: s.Group, Version: "v1alpha1"}
	cfg.APIPath = "/apis"
	cfg.ContentType = mediaType
	cfg.AcceptContentTypes = mediaType
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	c, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("REST client for %s (%s): %w", s.Name, mediaType, err)
	}
	if s.clients == nil {
		s.clients = map[string]*rest.RESTClient{}
	}
	s.clients[mediaType] = c
	return c, nil
}

// collection is the path of the Servers of namespace ns.
func (s *Side) collection(ns string) string {
	return "/apis/" + s.Group + "/v1alpha1/namespaces/" + ns + "/servers"
}

// probe finds out whether the side answers in mediaType: a GET that
// accepts only mediaType must come back 200 in that type. It also notes
// which media types the side's OpenAPI v3 claims for listing Servers,
// because the generic server claims protobuf even for types that have no
// protobuf encoding.
func (s *Side) probe(ctx context.Context, mediaType string) error {
	c, err := s.client(mediaType)
	if err != nil {
		return err
	}
	var code int
	var got string
	res := c.Get().AbsPath(s.collection(s.WarmNamespace)).Param("limit", "1").Do(ctx).StatusCode(&code).ContentType(&got)
	body, rerr := res.Raw()
	gotType, _, _ := mime.ParseMediaType(got)
	offered := rerr == nil && code == http.StatusOK && gotType == mediaType
	var answer string
	switch {
	case offered:
		answer = fmt.Sprintf("answered %d in %s", code, gotType)
	case rerr != nil:
		answer = fmt.Sprintf("answered %d (%s)", code, firstLine(rerr.Error()))
	default:
		answer = fmt.Sprintf("answered %d in %s instead (%s)", code, got, firstLine(string(body)))
	}
	claims, cerr := s.openAPIMediaTypes(ctx)
	claim := "OpenAPI v3 lists " + strings.Join(claims, ", ")
	if cerr != nil {
		claim = "OpenAPI v3 unreadable: " + cerr.Error()
	} else if slices.Contains(claims, mediaType) {
		claim = "OpenAPI v3 lists it (" + strings.Join(claims, ", ") + ")"
	} else {
		claim = "OpenAPI v3 does not list it (" + strings.Join(claims, ", ") + ")"
	}
	if s.Offered == nil {
		s.Offered, s.Probe = map[string]bool{}, map[string]string{}
	}
	s.Offered[mediaType] = offered
	s.Probe[mediaType] = answer + "; " + claim
	return nil
}

// openAPIMediaTypes are the response media types the side's OpenAPI v3
// document gives for listing Servers in a namespace.
func (s *Side) openAPIMediaTypes(ctx context.Context) ([]string, error) {
	c, err := s.client("application/json")
	if err != nil {
		return nil, err
	}
	raw, err := c.Get().AbsPath("/openapi/v3/apis/" + s.Group + "/v1alpha1").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Paths map[string]struct {
			Get *struct {
				Responses map[string]struct {
					Content map[string]json.RawMessage `json:"content"`
				} `json:"responses"`
			} `json:"get"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	p, ok := doc.Paths["/apis/"+s.Group+"/v1alpha1/namespaces/{namespace}/servers"]
	if !ok || p.Get == nil {
		return nil, fmt.Errorf("no GET of namespaced servers in the document")
	}
	var types []string
	for mt := range p.Get.Responses["200"].Content {
		types = append(types, mt)
	}
	sort.Strings(types)
	return types, nil
}

// writeType is the media type create bodies use: protobuf where offered,
// as Kubernetes' own components use it, else JSON.
func (s *Side) writeType(mediaTypes []string) string {
	pb := MediaType("protobuf")
	if slices.Contains(mediaTypes, pb) && s.Offered[pb] {
		return pb
	}
	return MediaType("json")
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}
