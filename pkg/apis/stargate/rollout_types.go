package stargate

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ServerRollout runs one Operation (a repave or a reboot) on every Server
// its selector picks in its namespace, a few at a time, the way a
// MachineDeployment rolls machines: never more than maxUnavailable of the
// selected Servers unavailable, stopping once more than maxFailures
// Operations failed. It is a one-shot, like a Job: the Servers are chosen
// when it starts and recorded in status, each gets one Operation, and a
// finished rollout stays as the record of what happened.
type ServerRollout struct {
	metav1.TypeMeta
	// +optional
	metav1.ObjectMeta

	// spec says what to run on which Servers, and how many at a time.
	// +optional
	Spec ServerRolloutSpec
	// status records the progress.
	// +optional
	Status ServerRolloutStatus
}

// ServerRolloutSpec says what to run on which Servers, and how many at a
// time. selector, operation and provisioningProfileRef cannot change once
// created; maxUnavailable, maxFailures and paused can.
type ServerRolloutSpec struct {
	// selector picks the Servers, in the rollout's namespace. An empty
	// selector picks every Server of the namespace.
	// +required
	Selector metav1.LabelSelector
	// operation is what to run on each Server: Repave (the default) or Reboot.
	// +optional
	Operation OperationType
	// provisioningProfileRef names the ProvisioningProfile each repave uses
	// (for example the one with the next Kubernetes version); each
	// Server's own profile when empty.
	// +optional
	ProvisioningProfileRef *LocalObjectReference
	// maxUnavailable is how many of the selected Servers may be unavailable
	// at once (their Operation running, or their Node not Ready), as a
	// number or a percentage of the selected Servers rounded down (but at
	// least 1). Defaults to 1.
	// +optional
	MaxUnavailable *intstr.IntOrString
	// maxFailures is how many Operations may fail before the rollout stops
	// starting new ones. Defaults to 0: the first failure stops it.
	// +optional
	MaxFailures *int32
	// paused stops the rollout from starting new Operations; running ones finish.
	// +optional
	Paused bool
	// reason is why the rollout was asked for; each Operation keeps it.
	// +optional
	Reason string
}

// ServerRolloutServerState is where one Server of a rollout is.
// +enum
type ServerRolloutServerState string

const (
	// RolloutServerWaiting has no Operation of the rollout yet.
	RolloutServerWaiting ServerRolloutServerState = "Waiting"
	// RolloutServerRunning has an Operation of the rollout that is not done.
	RolloutServerRunning ServerRolloutServerState = "Running"
	// RolloutServerSucceeded had its Operation succeed.
	RolloutServerSucceeded ServerRolloutServerState = "Succeeded"
	// RolloutServerFailed had its Operation fail, or it could not be started.
	RolloutServerFailed ServerRolloutServerState = "Failed"
)

// ServerRolloutServer is one Server of a rollout.
type ServerRolloutServer struct {
	// name of the Server.
	// +required
	Name string
	// state is Waiting, Running, Succeeded or Failed.
	// +required
	State ServerRolloutServerState
	// operation names the Operation the rollout started on the Server.
	// +optional
	Operation string
	// message says why a Server failed.
	// +optional
	Message string
}

// ServerRolloutStatus records the progress of a rollout.
type ServerRolloutStatus struct {
	// observedGeneration is the generation of the spec the controller last acted on.
	// +optional
	ObservedGeneration int64
	// servers are the selected Servers, recorded when the rollout starts, in
	// the order they are taken.
	// +optional
	// +listType=map
	// +listMapKey=name
	Servers []ServerRolloutServer
	// total is the number of selected Servers.
	// +optional
	Total int32
	// succeeded is the number of Servers whose Operation succeeded.
	// +optional
	Succeeded int32
	// running is the number of Servers whose Operation is not done.
	// +optional
	Running int32
	// failed is the number of Servers whose Operation failed.
	// +optional
	Failed int32
	// unavailable is the number of selected Servers unavailable when last
	// checked: an Operation running, or the Node not Ready.
	// +optional
	Unavailable int32
	// startTime is when the rollout started.
	// +optional
	StartTime *metav1.Time
	// completionTime is when the rollout finished, with every Server done or stopped.
	// +optional
	CompletionTime *metav1.Time
	// conditions: Progressing, Complete, Failed.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ServerRolloutList is a list of ServerRollouts.
type ServerRolloutList struct {
	metav1.TypeMeta
	// +optional
	metav1.ListMeta
	// items are the ServerRollouts.
	Items []ServerRollout
}
