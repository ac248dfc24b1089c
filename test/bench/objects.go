package bench

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"golang.org/x/crypto/ssh"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// The objects are realistic rather than minimal: a pinned host key, a
// router, and after the status phase four conditions and four route layers,
// so a Server weighs what a provisioned one does (about 3 KB of JSON).

func serverName(i int) string { return fmt.Sprintf("srv-%05d", i) }

// newServer is Server i as created by a user.
func newServer(group string, i int) *v1alpha1.Server {
	name := serverName(i)
	return &v1alpha1.Server{
		TypeMeta: metav1.TypeMeta{APIVersion: group + "/v1alpha1", Kind: "Server"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{"stargate.io/datacenter": "dc-east", "stargate.io/rack": fmt.Sprintf("r%02d", i%40)},
		},
		Spec: v1alpha1.ServerSpec{
			Hostname:               name,
			IPAddress:              fmt.Sprintf("10.50.%d.%d", i/250, i%250+2),
			MACAddress:             fmt.Sprintf("52:54:00:%02x:%02x:%02x", (i>>16)&0xff, (i>>8)&0xff, i&0xff),
			RouterIP:               "100.64.0.1",
			SSHPort:                22,
			HostKey:                hostKey(i),
			ProvisioningProfileRef: &v1alpha1.LocalObjectReference{Name: "ubuntu-2404-k8s-133"},
		},
	}
}

// hostKey is a valid ed25519 host key, different for every server.
func hostKey(i int) string {
	seed := make([]byte, ed25519.SeedSize)
	binary.BigEndian.PutUint64(seed, uint64(i)+1)
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seed).Public())
	if err != nil {
		panic(err) // an ed25519 key always converts
	}
	key := ssh.MarshalAuthorizedKey(pub)
	return string(key[:len(key)-1])
}

// serverStatus is the status of Server i once provisioned and routed.
func serverStatus(i int, now metav1.Time) v1alpha1.ServerStatus {
	name := serverName(i)
	podCIDR := fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256)
	cond := func(typ, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, ObservedGeneration: 1, LastTransitionTime: now, Reason: reason, Message: msg}
	}
	layer := func(l v1alpha1.RouteLayer, route string) v1alpha1.RouteLayerStatus {
		return v1alpha1.RouteLayerStatus{Layer: l, Desired: []string{route}, Observed: []string{route}, Healthy: true, Reason: "RoutesInSync", LastChecked: &now}
	}
	return v1alpha1.ServerStatus{
		Phase:              v1alpha1.ServerReady,
		NodeName:           name,
		PodCIDR:            podCIDR,
		LastOperation:      name + "-repave-x7k2p",
		ObservedGeneration: 1,
		Conditions: []metav1.Condition{
			cond("Provisioned", "BootstrapSucceeded", "node bootstrap script finished in 212s"),
			cond("NodeReady", "KubeletReady", "node "+name+" is Ready"),
			cond("RoutesReady", "AllLayersHealthy", "azure, tailscale, cilium and node routes are in sync"),
			cond("Ready", "Ready", "server is a Ready node with healthy routes"),
		},
		Routes: []v1alpha1.RouteLayerStatus{
			layer(v1alpha1.RouteLayerAzure, podCIDR+" via 10.224.0.4"),
			layer(v1alpha1.RouteLayerTailscale, podCIDR+" via dc-east-router"),
			layer(v1alpha1.RouteLayerCilium, podCIDR),
			layer(v1alpha1.RouteLayerNode, "10.244.0.0/16 via 10.50.1.1"),
		},
	}
}

// statusPatch is a JSON merge patch that sets the status of Server i.
func statusPatch(i int, now metav1.Time) ([]byte, error) {
	return json.Marshal(map[string]any{"status": serverStatus(i, now)})
}

// bodyCodecs encode request bodies of the typed Server, in JSON or, once
// the types have generated protobuf code, in protobuf.
var bodyCodecs = func() serializer.CodecFactory {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	return serializer.NewCodecFactory(scheme)
}()

// encodeBody encodes obj as mediaType, for a create request.
func encodeBody(obj runtime.Object, mediaType string) ([]byte, error) {
	info, ok := runtime.SerializerInfoForMediaType(bodyCodecs.SupportedMediaTypes(), mediaType)
	if !ok {
		return nil, fmt.Errorf("no serializer for %s", mediaType)
	}
	body, err := runtime.Encode(info.Serializer, obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s as %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, mediaType, err)
	}
	return body, nil
}
