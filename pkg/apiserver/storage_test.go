package apiserver

import (
	"bytes"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// protobufMagic starts every object Kubernetes' protobuf serializer writes.
var protobufMagic = []byte{0x6b, 0x38, 0x73, 0x00}

// Objects go to etcd as v1alpha1 protobuf by default, and what was stored
// as JSON (--storage-media-type=application/json) is still read.
func TestStorageCodecWritesProtobufAndReadsJSON(t *testing.T) {
	o := NewOptions(nil)
	codec, err := StorageCodec(o.RecommendedOptions.Etcd.DefaultStorageMediaType)
	if err != nil {
		t.Fatal(err)
	}
	in := &stargate.Server{ObjectMeta: metav1.ObjectMeta{Name: "worker-1", Namespace: "dc-east"}, Spec: stargate.ServerSpec{Hostname: "worker-1", IPAddress: "192.0.2.10"}}
	data, err := runtime.Encode(codec, in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, protobufMagic) {
		t.Fatalf("stored bytes are not protobuf: %q", data[:min(len(data), 40)])
	}
	out, err := runtime.Decode(codec, data)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := out.(*stargate.Server); !ok || s.Spec.IPAddress != "192.0.2.10" {
		t.Fatalf("decoded %#v", out)
	}

	jsonCodec, err := StorageCodec(runtime.ContentTypeJSON)
	if err != nil {
		t.Fatal(err)
	}
	old, err := runtime.Encode(jsonCodec, in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(old, []byte(`"apiVersion":"`+v1alpha1.SchemeGroupVersion.String()+`"`)) {
		t.Fatalf("JSON storage does not write %s: %s", v1alpha1.SchemeGroupVersion, old)
	}
	out, err = runtime.Decode(codec, old)
	if err != nil {
		t.Fatalf("an object stored as JSON is not read any more: %v", err)
	}
	if s, ok := out.(*stargate.Server); !ok || s.Spec.Hostname != "worker-1" {
		t.Fatalf("decoded %#v", out)
	}
}
