package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/keymutex"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/install"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/validation"
	"github.com/stargate-k8s/stargate/pkg/registry/stargate/operation"
)

// repaveWorld is the storage a RepaveREST works on, in memory: one Server,
// any profile, the Operations created. Every write goes through the
// strategy of its resource as the generic store runs it, and a write the
// strategy refuses is recorded: the handler must never attempt one.
type repaveWorld struct {
	server     *stargate.Server
	operations map[string]*stargate.Operation
	status     rest.RESTUpdateStrategy
	opStrategy rest.RESTCreateStrategy
	refused    []error
}

type worldServers struct{ w *repaveWorld }

func (s worldServers) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	if name != s.w.server.Name {
		return nil, apierrors.NewNotFound(stargate.Resource("servers"), name)
	}
	return s.w.server.DeepCopy(), nil
}

type worldStatus struct{ w *repaveWorld }

func (s worldStatus) New() runtime.Object { return &stargate.Server{} }

func (s worldStatus) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, _ rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, _ bool, _ *metav1.UpdateOptions) (runtime.Object, bool, error) {
	if name != s.w.server.Name {
		return nil, false, apierrors.NewNotFound(stargate.Resource("servers"), name)
	}
	old := s.w.server.DeepCopy()
	obj, err := objInfo.UpdatedObject(ctx, old)
	if err != nil {
		return nil, false, err
	}
	if err := rest.BeforeUpdate(s.w.status, ctx, obj, old); err != nil {
		s.w.refused = append(s.w.refused, err)
		return nil, false, err
	}
	if updateValidation != nil {
		if err := updateValidation(ctx, obj, old); err != nil {
			return nil, false, err
		}
	}
	s.w.server = obj.(*stargate.Server)
	return obj, false, nil
}

type worldProfiles struct{}

func (worldProfiles) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	return &stargate.ProvisioningProfile{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: genericapirequest.NamespaceValue(ctx)}}, nil
}

type worldOperations struct{ w *repaveWorld }

func (o worldOperations) New() runtime.Object { return &stargate.Operation{} }

func (o worldOperations) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	if op, ok := o.w.operations[name]; ok {
		return op.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(stargate.Resource("operations"), name)
}

func (o worldOperations) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	op := obj.(*stargate.Operation)
	rest.FillObjectMetaSystemFields(op)
	if err := rest.BeforeCreate(o.w.opStrategy, ctx, op); err != nil {
		o.w.refused = append(o.w.refused, err)
		return nil, err
	}
	if createValidation != nil {
		if err := createValidation(ctx, op); err != nil {
			return nil, err
		}
	}
	if len(options.DryRun) == 0 {
		o.w.operations[op.Name] = op.DeepCopy()
	}
	return op, nil
}

var (
	fuzzScheme = func() *runtime.Scheme {
		s := runtime.NewScheme()
		install.Install(s)
		metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
		return s
	}()
	fuzzCodecs    = serializer.NewCodecFactory(fuzzScheme)
	repaveKind    = v1alpha1.SchemeGroupVersion.WithKind("RepaveRequest")
	serversGVR    = v1alpha1.SchemeGroupVersion.WithResource("servers")
	internalGV    = schema.GroupVersion{Group: stargate.GroupName, Version: runtime.APIVersionInternal}
	fuzzMediaType = []string{runtime.ContentTypeJSON, runtime.ContentTypeYAML, runtime.ContentTypeProtobuf}
)

// decodeRepaveRequest decodes body as the generic create handler of
// k8s.io/apiserver does for servers/NAME/repave: the serializer of the
// content type (strict when field validation asks for it, keeping the
// object of a strict error as Warn does), converted to the internal
// version into the subresource's New(), then the API version checked and
// the system fields of metadata wiped. It returns nil when the handler
// answers 400 before calling Create.
func decodeRepaveRequest(t *testing.T, body []byte, mediaType string, strict bool) runtime.Object {
	info, ok := runtime.SerializerInfoForMediaType(fuzzCodecs.SupportedMediaTypes(), mediaType)
	if !ok {
		t.Fatalf("no serializer for %s", mediaType)
	}
	s := info.Serializer
	if strict && info.StrictSerializer != nil {
		s = info.StrictSerializer
	}
	decoder := fuzzCodecs.DecoderToVersion(s, internalGV)
	defaultGVK := repaveKind
	obj, gvk, err := decoder.Decode(body, &defaultGVK, &stargate.RepaveRequest{})
	if err != nil {
		if _, isStrict := runtime.AsStrictDecodingError(err); !isStrict || obj == nil {
			return nil
		}
	}
	if gvk == nil || gvk.GroupVersion() != v1alpha1.SchemeGroupVersion {
		return nil
	}
	if m, err := meta.Accessor(obj); err == nil {
		rest.WipeObjectMetaSystemFields(m)
		if err := rest.EnsureObjectNamespaceMatchesRequestNamespace(rest.ExpectedNamespaceForResource("dc-east", serversGVR), m); err != nil {
			return nil
		}
	}
	return obj
}

func encodeSeed(f *testing.F, mediaType string, req *stargate.RepaveRequest) []byte {
	info, _ := runtime.SerializerInfoForMediaType(fuzzCodecs.SupportedMediaTypes(), mediaType)
	var buf bytes.Buffer
	if err := fuzzCodecs.EncoderForVersion(info.Serializer, v1alpha1.SchemeGroupVersion).Encode(req, &buf); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzRepaveRequest posts arbitrary bytes, in each content type the
// server takes, to servers/NAME/repave of a valid Server as the API
// server's create handler would. It must not panic; whatever the handler
// accepts must pass ValidateRepaveRequest and lead only to writes the
// stores accept (the Operation it creates, the Server's status it claims),
// carrying the request's reason and profile and the Server's name;
// whatever it refuses must be a client error (4xx), and an invalid request
// must name the fields.
func FuzzRepaveRequest(f *testing.F) {
	full := &stargate.RepaveRequest{ProvisioningProfileRef: &stargate.LocalObjectReference{Name: "gpu"}, Reason: "disk replaced"}
	for i, mt := range fuzzMediaType {
		f.Add(encodeSeed(f, mt, full), uint8(i), "worker-1", false)
		f.Add(encodeSeed(f, mt, &stargate.RepaveRequest{}), uint8(i|4), "worker-1", true)
	}
	f.Add([]byte(`{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","reason":"r","provisioningProfileRef":{"name":"Bad!"}}`), uint8(0), "worker-1", false)
	f.Add([]byte(`{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","metadata":{"namespace":"other","uid":"x"},"extra":1}`), uint8(4), "worker-1", false)
	f.Add([]byte(`{"apiVersion":"stargate.io/v1alpha1","kind":"Server","spec":{"hostname":"x"}}`), uint8(0), "worker-1", false)
	f.Add([]byte(`{"apiVersion":"v1","kind":"Status"}`), uint8(0), "worker-1", false)
	f.Add([]byte(`{"reason":"no kind"}`), uint8(0), "a.b.c", false)
	f.Add([]byte("reason: from yaml\nprovisioningProfileRef: {name: gpu}\n"), uint8(1), "worker-1", false)
	f.Add([]byte(`{}`), uint8(0), "worker-with-a-name-of-sixty-four-characters-is-no-label-value-00", false)
	f.Fuzz(func(t *testing.T, body []byte, mode uint8, serverName string, dryRun bool) {
		obj := decodeRepaveRequest(t, body, fuzzMediaType[int(mode&3)%len(fuzzMediaType)], mode&4 != 0)
		if obj == nil {
			return
		}
		srv := &stargate.Server{
			ObjectMeta: metav1.ObjectMeta{Name: serverName, Namespace: "dc-east", UID: "uid-1", ResourceVersion: "1", Generation: 1},
			Spec: stargate.ServerSpec{Hostname: "worker-1", IPAddress: "10.50.1.11", SSHPort: 22,
				ProvisioningProfileRef: &stargate.LocalObjectReference{Name: "default"}},
		}
		if errs := validation.ValidateServer(srv); len(errs) > 0 {
			srv.Name = "worker-1" // only valid Servers exist
		}
		srv.Status.Phase = stargate.ServerPending
		strategy := NewStrategy(fuzzScheme)
		w := &repaveWorld{server: srv, operations: map[string]*stargate.Operation{},
			status: NewStatusStrategy(strategy), opStrategy: operation.NewStrategy(fuzzScheme)}
		r := &RepaveREST{&claimer{locks: keymutex.NewHashed(0), servers: worldServers{w}, status: worldStatus{w}, profiles: worldProfiles{}, operations: worldOperations{w}}}
		ctx := genericapirequest.WithNamespace(context.Background(), "dc-east")
		opts := &metav1.CreateOptions{}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}

		out, err := r.Create(ctx, srv.Name, obj, nil, opts)

		if len(w.refused) > 0 {
			t.Fatalf("the repave of %q with %#v wrote what its store refuses: %v", srv.Name, obj, w.refused)
		}
		if err != nil {
			var status apierrors.APIStatus
			if !errors.As(err, &status) || status.Status().Code < 400 || status.Status().Code >= 500 {
				t.Fatalf("refused with %v, not a client error", err)
			}
			if status.Status().Code == http.StatusUnprocessableEntity {
				for _, c := range status.Status().Details.Causes {
					if c.Field == "" {
						t.Fatalf("invalid request refused without naming the field: %v", err)
					}
				}
			}
			return
		}
		req := obj.(*stargate.RepaveRequest)
		if errs := validation.ValidateRepaveRequest(req); len(errs) > 0 {
			t.Fatalf("accepted a request that fails validation: %v", errs)
		}
		op, ok := out.(*stargate.Operation)
		if !ok {
			t.Fatalf("answered %T, want an Operation", out)
		}
		wantProfile := srv.Spec.ProvisioningProfileRef.Name
		if req.ProvisioningProfileRef != nil {
			wantProfile = req.ProvisioningProfileRef.Name
		}
		if op.Spec.ServerRef.Name != srv.Name || op.Spec.Reason != req.Reason || op.Spec.ProvisioningProfileRef.Name != wantProfile ||
			op.Labels[stargate.LabelServer] != srv.Name || len(op.OwnerReferences) != 1 || op.OwnerReferences[0].UID != srv.UID {
			t.Fatalf("request %#v for Server %q made Operation %#v", req, srv.Name, op)
		}
		if last := w.server.Status.LastOperation; dryRun && last != "" || !dryRun && last != op.Name {
			t.Fatalf("after the repave (dry run %v) the Server's lastOperation is %q, the Operation %q", dryRun, last, op.Name)
		}
	})
}
