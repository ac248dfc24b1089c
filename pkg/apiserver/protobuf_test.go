package apiserver

import (
	"bytes"
	"math/rand"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	"k8s.io/apimachinery/pkg/api/apitesting/roundtrip"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// protobufFuzzIters is how many randomly filled objects of each kind are
// round-tripped.
const protobufFuzzIters = 50

// protobufSerializer is the protobuf entry of Codecs, the serializer the
// server answers application/vnd.kubernetes.protobuf requests with.
func protobufSerializer(t *testing.T) runtime.SerializerInfo {
	t.Helper()
	info, ok := runtime.SerializerInfoForMediaType(Codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok {
		var offered []string
		for _, i := range Codecs.SupportedMediaTypes() {
			offered = append(offered, i.MediaType)
		}
		t.Fatalf("Codecs does not offer %s; it offers %v", runtime.ContentTypeProtobuf, offered)
	}
	return info
}

func TestCodecsOfferProtobuf(t *testing.T) {
	info := protobufSerializer(t)
	if info.MediaType != runtime.ContentTypeProtobuf {
		t.Errorf("media type %q, want %q", info.MediaType, runtime.ContentTypeProtobuf)
	}
	if info.Serializer == nil {
		t.Errorf("no serializer for %s", runtime.ContentTypeProtobuf)
	}
	if info.StreamSerializer == nil {
		t.Errorf("no stream (watch) serializer for %s", runtime.ContentTypeProtobuf)
	}
}

// v1alpha1Kinds are the kinds of Scheme whose Go types are the stargate.io
// v1alpha1 types, leaving out the meta types (ListOptions, WatchEvent, ...)
// registered into every group version.
func v1alpha1Kinds(t *testing.T) []schema.GroupVersionKind {
	t.Helper()
	pkgPath := reflect.TypeOf(v1alpha1.Server{}).PkgPath()
	var kinds []schema.GroupVersionKind
	for kind, typ := range Scheme.KnownTypes(v1alpha1.SchemeGroupVersion) {
		if typ.PkgPath() == pkgPath {
			kinds = append(kinds, v1alpha1.SchemeGroupVersion.WithKind(kind))
		}
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i].Kind < kinds[j].Kind })

	want := []string{
		"Datacenter", "DatacenterList",
		"Operation", "OperationList",
		"ProvisioningProfile", "ProvisioningProfileList",
		"RebootRequest", "RepaveRequest",
		"Server", "ServerList", "ServerRollout", "ServerRolloutList", "ServerRoutes",
	}
	var got []string
	for _, k := range kinds {
		got = append(got, k.Kind)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("v1alpha1 kinds of Scheme (-want +got):\n%s", diff)
	}
	return kinds
}

// fillFuncs make the every-field-set objects valid where a plain value is not:
// a Time with a wall-clock time, managed fields that are JSON, and no kind in
// the TypeMeta of list items, which protobuf (like JSON) does not carry.
var fillFuncs = map[reflect.Type]roundtrip.FillFunc{
	reflect.TypeOf(&metav1.TypeMeta{}): func(_ string, _ int, obj interface{}) {
		*obj.(*metav1.TypeMeta) = metav1.TypeMeta{}
	},
	reflect.TypeOf(&metav1.Time{}): func(_ string, i int, obj interface{}) {
		obj.(*metav1.Time).Time = time.Date(2000+i, 1, 1, 1, 1, 1, 0, time.UTC)
	},
	reflect.TypeOf(&metav1.FieldsV1{}): func(_ string, _ int, obj interface{}) {
		obj.(*metav1.FieldsV1).SetRawString(`{"f:spec":{}}`)
	},
}

// TestProtobufRoundTrip encodes every v1alpha1 kind with the protobuf
// serializer of Codecs, the way the server writes responses, decodes it again
// and compares: once with every field set, and with randomly filled objects.
func TestProtobufRoundTrip(t *testing.T) {
	info := protobufSerializer(t)
	seed := time.Now().UnixNano()
	t.Logf("fuzzer seed %d", seed)
	fuzz := fuzzer.FuzzerFor(metafuzzer.Funcs, rand.NewSource(seed), Codecs)

	for _, gvk := range v1alpha1Kinds(t) {
		t.Run(gvk.Kind, func(t *testing.T) {
			filled, err := roundtrip.CompatibilityTestObject(Scheme, gvk, fillFuncs)
			if err != nil {
				t.Fatal(err)
			}
			assertEveryFieldSet(t, reflect.ValueOf(filled).Elem(), gvk.Kind)
			protobufRoundTrip(t, info, gvk, filled)

			for i := 0; i < protobufFuzzIters && !t.Failed(); i++ {
				obj, err := Scheme.New(gvk)
				if err != nil {
					t.Fatal(err)
				}
				fuzz.Fill(obj)
				obj.GetObjectKind().SetGroupVersionKind(gvk)
				protobufRoundTrip(t, info, gvk, obj)
			}
		})
	}
}

func protobufRoundTrip(t *testing.T, info runtime.SerializerInfo, gvk schema.GroupVersionKind, original runtime.Object) {
	t.Helper()
	obj := original.DeepCopyObject()
	encoder := Codecs.EncoderForVersion(info.Serializer, gvk.GroupVersion())

	data, err := runtime.Encode(encoder, obj)
	if err != nil {
		t.Fatalf("encode %s as protobuf: %v", gvk.Kind, err)
	}
	if !bytes.HasPrefix(data, []byte("k8s\x00")) {
		t.Fatalf("encoded %s does not start with the protobuf magic number: %q", gvk.Kind, data[:min(len(data), 16)])
	}
	again, err := runtime.Encode(encoder, obj)
	if err != nil {
		t.Fatalf("encode %s a second time: %v", gvk.Kind, err)
	}
	if !bytes.Equal(data, again) {
		t.Errorf("encoding %s is not stable", gvk.Kind)
	}
	if !apiequality.Semantic.DeepEqual(original, obj) {
		t.Fatalf("encoding altered the %s (-original +encoded):\n%s", gvk.Kind, cmp.Diff(original, obj))
	}

	// Decode as the server reads a request body: the serializer finds the
	// kind in the envelope and makes the object.
	decoded, gotGVK, err := info.Serializer.Decode(data, nil, nil)
	if err != nil {
		t.Fatalf("decode %s from protobuf: %v", gvk.Kind, err)
	}
	if *gotGVK != gvk {
		t.Errorf("decoded kind %v, want %v", *gotGVK, gvk)
	}
	if !apiequality.Semantic.DeepEqual(original, decoded) {
		t.Fatalf("%s changed in the protobuf round trip (-original +decoded):\n%s", gvk.Kind, cmp.Diff(original, decoded))
	}

	// And into a given object, as a typed client does.
	into, err := Scheme.New(gvk)
	if err != nil {
		t.Fatal(err)
	}
	if err := runtime.DecodeInto(Codecs.UniversalDeserializer(), data, into); err != nil {
		t.Fatalf("decode %s into a %T: %v", gvk.Kind, into, err)
	}
	into.GetObjectKind().SetGroupVersionKind(gvk)
	if !apiequality.Semantic.DeepEqual(original, into) {
		t.Fatalf("%s decoded into an object differs (-original +decoded):\n%s", gvk.Kind, cmp.Diff(original, into))
	}
}

// assertEveryFieldSet fails for a field of v, recursively, that holds its
// zero value, so that the every-field-set object really has every field set
// and a field protobuf drops cannot hide behind a zero value.
func assertEveryFieldSet(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			t.Errorf("%s is not set", path)
			return
		}
		assertEveryFieldSet(t, v.Elem(), path)
	case reflect.Struct:
		switch x := v.Addr().Interface().(type) {
		case *metav1.TypeMeta:
			// Set on the object itself, empty on list items.
			return
		case *metav1.Time:
			if x.IsZero() {
				t.Errorf("%s is not set", path)
			}
			return
		}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			assertEveryFieldSet(t, v.Field(i), path+"."+f.Name)
		}
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			t.Errorf("%s is empty", path)
			return
		}
		if v.Kind() == reflect.Slice {
			assertEveryFieldSet(t, v.Index(0), path+"[0]")
		}
	default:
		if v.IsZero() {
			t.Errorf("%s is not set", path)
		}
	}
}
