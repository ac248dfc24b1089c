// Package v1alpha1 is the v1alpha1 version of the stargate.io API: the
// Datacenters an admin declares, the Servers in them, the
// ProvisioningProfiles that say how to turn Servers into Kubernetes nodes,
// and the Operations (repaves) that do it.
//
// +k8s:openapi-gen=true
// +k8s:protobuf-gen=package
// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=github.com/stargate-k8s/stargate/pkg/apis/stargate
// +k8s:defaulter-gen=TypeMeta
// +groupName=stargate.io
// +k8s:openapi-model-package=io.stargate.v1alpha1
package v1alpha1
