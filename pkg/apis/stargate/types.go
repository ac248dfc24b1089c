package stargate

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Datacenter declares a datacenter: the namespace its Servers, profiles,
// Secrets and Operations live in, and its network. A namespace is a
// datacenter only when a Datacenter names it, and only cluster admins
// create Datacenters: a datacenter operator, whose roles are bound in the
// namespace, works inside the network the admin declared here.
type Datacenter struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the datacenter's namespace and network.
	// +optional
	Spec DatacenterSpec `json:"spec,omitempty"`
	// status is what Stargate observed of the datacenter.
	// +optional
	Status DatacenterStatus `json:"status,omitempty"`
}

// DatacenterSpec declares a datacenter's namespace and network.
type DatacenterSpec struct {
	// namespace is the namespace of the datacenter's Servers, profiles,
	// Secrets and Operations, a DNS label. At most one Datacenter names a
	// namespace, and it cannot change once set.
	// +required
	Namespace string `json:"namespace"`
	// workerSubnet is the CIDR of the servers' own addresses, in canonical
	// form (e.g. 10.50.1.0/24): every Server of the datacenter has its
	// spec.ipAddress in it.
	// +required
	WorkerSubnet string `json:"workerSubnet"`
	// router is the datacenter router: the SSH jump host to the workers and
	// the tailnet device that advertises the worker subnet and pod CIDRs.
	// +required
	Router DatacenterRouter `json:"router"`
	// agentGateway is the router's address in the worker subnet: the next
	// hop through which the workers reach the cluster's pod and service
	// CIDRs, and which the node agent checks their routes against.
	// +required
	AgentGateway string `json:"agentGateway"`
	// podCIDRBlock, when set, is the CIDR (canonical form) every pinned
	// spec.podCIDR of the datacenter's Servers must lie in. It must not
	// overlap workerSubnet.
	// +optional
	PodCIDRBlock string `json:"podCIDRBlock,omitempty"`
}

// DatacenterRouter is how Stargate reaches a datacenter's router.
type DatacenterRouter struct {
	// ip is the router's tailnet address. Every Server of the datacenter
	// names it as its spec.routerIP.
	// +required
	IP string `json:"ip"`
}

// DatacenterStatus is what Stargate observed of a datacenter.
type DatacenterStatus struct {
	// observedGeneration is the spec generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready says whether the datacenter's network is usable.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// tailscale records, per tailnet device, the subnet routes Stargate
	// enabled through the Tailscale API or made the router advertise for
	// this datacenter. It is written before the call that enables or
	// advertises a route, so a crash cannot lose it, and a route leaves
	// it only once withdrawn. Stargate withdraws only routes recorded
	// here (in any Datacenter): a route someone else enabled, even inside
	// the pod pool, is never touched. While a record is not empty the
	// Datacenter keeps the stargate.io/routes finalizer.
	// +optional
	// +listType=map
	// +listMapKey=tailnetIP
	Tailscale []TailscaleRouteRecord `json:"tailscale,omitempty"`
}

// TailscaleRouteRecord is what Stargate did on one tailnet device for a
// datacenter.
type TailscaleRouteRecord struct {
	// tailnetIP is the device's tailnet address: the datacenter's router,
	// or the AKS router.
	// +required
	TailnetIP string `json:"tailnetIP"`
	// deviceID is the node ID of the device the routes were enabled on.
	// A device that now has the address under another ID is another
	// device: routes enabled on it are not Stargate's.
	// +optional
	DeviceID string `json:"deviceID,omitempty"`
	// enabled are the routes (canonical CIDRs) Stargate enabled on the
	// device that were not enabled before.
	// +optional
	// +listType=set
	Enabled []string `json:"enabled,omitempty"`
	// advertised are the routes Stargate made the router advertise that
	// it did not advertise before (datacenter routers only).
	// +optional
	// +listType=set
	Advertised []string `json:"advertised,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// DatacenterList is a list of Datacenters.
type DatacenterList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the Datacenters.
	Items []Datacenter `json:"items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Server is a bare-metal or virtual machine in a remote datacenter that
// Stargate turns into a worker node of the cluster. Servers live in a
// namespace per datacenter.
type Server struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the server: how to reach it and how to provision it.
	// +optional
	Spec ServerSpec `json:"spec,omitempty"`
	// status is what Stargate observed and did: phase, node, pod CIDR, conditions and route health.
	// +optional
	Status ServerStatus `json:"status,omitempty"`
}

// ServerSpec says how to reach a server and how to provision it.
type ServerSpec struct {
	// hostname is the server's host name and the name of the Kubernetes Node it
	// becomes. It must be a DNS-1123 label and cannot change once set.
	// +required
	Hostname string `json:"hostname"`
	// ipAddress is the server's address in the datacenter's worker subnet,
	// where it is reached over SSH.
	// +required
	IPAddress string `json:"ipAddress"`
	// macAddress is the MAC address of the server's primary interface, in
	// colon-separated hexadecimal form (e.g. 52:54:00:12:34:56).
	// +optional
	MACAddress string `json:"macAddress,omitempty"`
	// routerIP is the tailnet IP of the datacenter router, used as SSH jump
	// host to reach the server. Empty means the server is reached directly.
	// +optional
	RouterIP string `json:"routerIP,omitempty"`
	// sshPort is the TCP port of the server's SSH daemon. Defaults to 22.
	// +optional
	SSHPort int32 `json:"sshPort,omitempty"`
	// hostKey pins the server's SSH host key, in authorized_keys form
	// ("ssh-ed25519 AAAA..."). When set, a connection presenting any other
	// key is refused. When empty, the known_hosts entry of the profile's SSH
	// credentials Secret is used.
	// +optional
	HostKey string `json:"hostKey,omitempty"`
	// provisioningProfileRef names the ProvisioningProfile, in the same
	// namespace, that says how to provision this server.
	// +optional
	ProvisioningProfileRef *LocalObjectReference `json:"provisioningProfileRef,omitempty"`
	// podCIDR pins the pod CIDR of this server's node. Empty means Stargate
	// allocates one from its pool.
	// +optional
	PodCIDR string `json:"podCIDR,omitempty"`
}

// LocalObjectReference names an object in the same namespace.
// +structType=atomic
type LocalObjectReference struct {
	// name of the referent.
	// +required
	Name string `json:"name"`
}

// ServerPhase is a coarse summary of where a server is in its life.
// +enum
type ServerPhase string

const (
	// ServerPending means the server has never been provisioned.
	ServerPending ServerPhase = "Pending"
	// ServerProvisioning means a repave is running.
	ServerProvisioning ServerPhase = "Provisioning"
	// ServerReady means the server is a Ready node.
	ServerReady ServerPhase = "Ready"
	// ServerFailed means the last repave failed or the node is gone.
	ServerFailed ServerPhase = "Failed"
)

// ServerStatus is what Stargate observed of a server and did to it.
type ServerStatus struct {
	// phase is a coarse summary: Pending, Provisioning, Ready or Failed.
	// +optional
	Phase ServerPhase `json:"phase,omitempty"`
	// nodeName is the name of the Node this server registered as.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// podCIDR is the pod CIDR allocated to this server's node.
	// +optional
	PodCIDR string `json:"podCIDR,omitempty"`
	// lastOperation is the name of the most recent Operation on this server.
	// +optional
	LastOperation string `json:"lastOperation,omitempty"`
	// observedGeneration is the spec generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Provisioned, NodeReady, RoutesReady (with one condition per
	// route layer) and Ready, which summarises them.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// routes is the health of this server's routes on each layer.
	// +optional
	// +listType=map
	// +listMapKey=layer
	Routes []RouteLayerStatus `json:"routes,omitempty"`
}

// RouteLayer names a layer on which routes to a server's pods are kept.
// +enum
type RouteLayer string

const (
	// RouteLayerAzure is the Azure VNet route table of the cluster.
	RouteLayerAzure RouteLayer = "azure"
	// RouteLayerTailscale is the tailnet's subnet routes.
	RouteLayerTailscale RouteLayer = "tailscale"
	// RouteLayerCilium is the pod CIDR Cilium assigns to the node.
	RouteLayerCilium RouteLayer = "cilium"
	// RouteLayerNode is the worker's own kernel routing table.
	RouteLayerNode RouteLayer = "node"
)

// RouteLayerStatus is the route health of one layer.
type RouteLayerStatus struct {
	// layer is azure, tailscale, cilium or node.
	// +required
	Layer RouteLayer `json:"layer"`
	// desired are the routes (CIDRs, with next hop where it matters) this
	// layer should carry for the server.
	// +optional
	// +listType=atomic
	Desired []string `json:"desired,omitempty"`
	// observed are the routes found on this layer when last checked.
	// +optional
	// +listType=atomic
	Observed []string `json:"observed,omitempty"`
	// healthy is true when observed matches desired.
	Healthy bool `json:"healthy"`
	// reason is a CamelCase word saying why the layer is (un)healthy.
	// +optional
	Reason string `json:"reason,omitempty"`
	// message says what is missing or wrong, for a person.
	// +optional
	Message string `json:"message,omitempty"`
	// lastChecked is when the layer was last checked.
	// +optional
	LastChecked *metav1.Time `json:"lastChecked,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ServerList is a list of Servers.
type ServerList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the Servers.
	Items []Server `json:"items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ProvisioningProfile says how a Server becomes a node: the Kubernetes
// version, container runtime, credentials and node labels and taints.
type ProvisioningProfile struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the profile.
	// +optional
	Spec ProvisioningProfileSpec `json:"spec,omitempty"`
}

// ContainerRuntime names a container runtime a node can run.
// +enum
type ContainerRuntime string

const (
	// ContainerRuntimeContainerd is containerd.
	ContainerRuntimeContainerd ContainerRuntime = "containerd"
)

// ProvisioningProfileSpec says how a Server becomes a node.
type ProvisioningProfileSpec struct {
	// kubernetesVersion is the kubelet version to install, "1.33" (latest
	// patch) or "1.33.2" (exact), with or without a leading "v".
	// +required
	KubernetesVersion string `json:"kubernetesVersion"`
	// containerRuntime is the container runtime to install. Defaults to containerd.
	// +optional
	ContainerRuntime ContainerRuntime `json:"containerRuntime,omitempty"`
	// sshCredentialsSecretRef names a Secret of type kubernetes.io/ssh-auth,
	// in the same namespace, holding the private key for adminUsername and
	// optionally a known_hosts entry.
	// +required
	SSHCredentialsSecretRef *LocalObjectReference `json:"sshCredentialsSecretRef"`
	// tailscaleAuthKeySecretRef names a Secret, in the same namespace, with a
	// Tailscale auth key for workers that join the tailnet themselves.
	// +optional
	TailscaleAuthKeySecretRef *LocalObjectReference `json:"tailscaleAuthKeySecretRef,omitempty"`
	// adminUsername is the user Stargate logs in as over SSH; it must be able to sudo.
	// +required
	AdminUsername string `json:"adminUsername"`
	// bootstrapScriptRef names a ConfigMap key, in the same namespace, holding
	// a node bootstrap script to run instead of Stargate's own (e.g. for
	// air-gapped package mirrors).
	// +optional
	BootstrapScriptRef *ConfigMapKeyReference `json:"bootstrapScriptRef,omitempty"`
	// nodeLabels are added to the Node at registration.
	// +optional
	NodeLabels map[string]string `json:"nodeLabels,omitempty"`
	// nodeTaints are added to the Node at registration.
	// +optional
	// +listType=atomic
	NodeTaints []Taint `json:"nodeTaints,omitempty"`
	// drainTimeout bounds the drain before a repave, reboot or
	// decommission of a server with this profile. Defaults to 5m.
	// +optional
	DrainTimeout *metav1.Duration
}

// ConfigMapKeyReference names a key of a ConfigMap in the same namespace.
// +structType=atomic
type ConfigMapKeyReference struct {
	// name of the ConfigMap.
	// +required
	Name string `json:"name"`
	// key in the ConfigMap's data.
	// +required
	Key string `json:"key"`
}

// TaintEffect is the effect of a node taint.
// +enum
type TaintEffect string

const (
	// TaintEffectNoSchedule keeps new pods off the node.
	TaintEffectNoSchedule TaintEffect = "NoSchedule"
	// TaintEffectPreferNoSchedule keeps new pods off the node where possible.
	TaintEffectPreferNoSchedule TaintEffect = "PreferNoSchedule"
	// TaintEffectNoExecute evicts pods that do not tolerate the taint.
	TaintEffectNoExecute TaintEffect = "NoExecute"
)

// Taint is a node taint, as in core/v1.
type Taint struct {
	// key of the taint, a qualified name.
	// +required
	Key string `json:"key"`
	// value of the taint.
	// +optional
	Value string `json:"value,omitempty"`
	// effect is NoSchedule, PreferNoSchedule or NoExecute.
	// +required
	Effect TaintEffect `json:"effect"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ProvisioningProfileList is a list of ProvisioningProfiles.
type ProvisioningProfileList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the ProvisioningProfiles.
	Items []ProvisioningProfile `json:"items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Operation is one run of an action on a Server, such as a repave. Its spec
// cannot change once created; its status records each step.
type Operation struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says what to do to which server. It is immutable.
	// +optional
	Spec OperationSpec `json:"spec,omitempty"`
	// status records the progress.
	// +optional
	Status OperationStatus `json:"status,omitempty"`
}

// OperationType names what an Operation does.
// +enum
type OperationType string

const (
	// OperationRepave wipes a server and provisions it as a node again.
	OperationRepave OperationType = "Repave"
	// OperationReboot drains the server's Node, reboots the server and
	// waits for the Node to be Ready again.
	OperationReboot OperationType = "Reboot"
	// OperationDecommission drains the server's Node, resets the host (the
	// kubelet stopped and disabled, its configuration and certificates
	// removed) and deletes the Node.
	OperationDecommission OperationType = "Decommission"
)

// OperationSpec says what to do to which server.
type OperationSpec struct {
	// serverRef names the Server, in the same namespace.
	// +required
	ServerRef LocalObjectReference `json:"serverRef"`
	// provisioningProfileRef names the ProvisioningProfile to use.
	// +required
	ProvisioningProfileRef LocalObjectReference `json:"provisioningProfileRef"`
	// operation is what to do. Defaults to Repave.
	// +optional
	Operation OperationType `json:"operation,omitempty"`
	// reason is why the operation was asked for, for the record.
	// +optional
	Reason string `json:"reason,omitempty"`
	// force evicts, once drainTimeout has passed, the pods a
	// PodDisruptionBudget still protects (by deleting them), as kubectl
	// drain --disable-eviction does; without it such an Operation fails.
	// +optional
	Force bool
	// drainTimeout bounds the drain of the server's Node; the profile's,
	// or 5m, when empty.
	// +optional
	DrainTimeout *metav1.Duration
}

// OperationPhase is where an Operation is.
// +enum
type OperationPhase string

const (
	// OperationPending means no step has started.
	OperationPending OperationPhase = "Pending"
	// OperationRunning means a step is running.
	OperationRunning OperationPhase = "Running"
	// OperationSucceeded means every step succeeded.
	OperationSucceeded OperationPhase = "Succeeded"
	// OperationFailed means a step failed; message says which and why.
	OperationFailed OperationPhase = "Failed"
)

// StepState is where one step of an Operation is.
// +enum
type StepState string

const (
	// StepPending has not started.
	StepPending StepState = "Pending"
	// StepRunning has started and not finished.
	StepRunning StepState = "Running"
	// StepSucceeded finished well.
	StepSucceeded StepState = "Succeeded"
	// StepFailed finished badly.
	StepFailed StepState = "Failed"
)

// OperationStep is one step of an Operation.
type OperationStep struct {
	// name of the step, unique within the Operation.
	// +required
	Name string `json:"name"`
	// state is Pending, Running, Succeeded or Failed.
	// +required
	State StepState `json:"state"`
	// message says what the step did or why it failed.
	// +optional
	Message string `json:"message,omitempty"`
	// startTime is when the step started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// completionTime is when the step finished.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// OperationStatus records the progress of an Operation.
type OperationStatus struct {
	// phase is Pending, Running, Succeeded or Failed.
	// +optional
	Phase OperationPhase `json:"phase,omitempty"`
	// startTime is when the first step started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// completionTime is when the operation succeeded or failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// steps are the steps in the order they run.
	// +optional
	// +listType=map
	// +listMapKey=name
	Steps []OperationStep `json:"steps,omitempty"`
	// message summarises the outcome for a person.
	// +optional
	Message string `json:"message,omitempty"`
	// outputTail is the last part of the bootstrap script's output, with secrets redacted.
	// +optional
	OutputTail string `json:"outputTail,omitempty"`
	// conditions of the operation.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// OperationList is a list of Operations.
type OperationList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the Operations.
	Items []Operation `json:"items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// RepaveRequest is the body of a POST to servers/NAME/repave. It starts a
// repave of the server and is answered with the Operation that runs it.
type RepaveRequest struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// provisioningProfileRef overrides the server's own profile for this repave.
	// +optional
	ProvisioningProfileRef *LocalObjectReference `json:"provisioningProfileRef,omitempty"`
	// reason is why the repave is asked for; it is kept on the Operation.
	// +optional
	Reason string `json:"reason,omitempty"`
	// force evicts, once drainTimeout has passed, the pods a
	// PodDisruptionBudget still protects; see OperationSpec.force.
	// +optional
	Force bool
	// drainTimeout bounds the drain; the profile's, or 5m, when empty.
	// +optional
	DrainTimeout *metav1.Duration
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// RebootRequest is the body of a POST to servers/NAME/reboot. It starts a
// reboot of the server (drain, reboot over SSH, wait for the Node to be
// Ready, uncordon) and is answered with the Operation that runs it.
type RebootRequest struct {
	metav1.TypeMeta
	// +optional
	metav1.ObjectMeta

	// reason is why the reboot is asked for; it is kept on the Operation.
	// +optional
	Reason string
	// force evicts, once drainTimeout has passed, the pods a
	// PodDisruptionBudget still protects; see OperationSpec.force.
	// +optional
	Force bool
	// drainTimeout bounds the drain; the profile's, or 5m, when empty.
	// +optional
	DrainTimeout *metav1.Duration
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ServerRoutes is what servers/NAME/routes returns: the route health of the
// server on every layer.
type ServerRoutes struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// podCIDR is the server's pod CIDR.
	// +optional
	PodCIDR string `json:"podCIDR,omitempty"`
	// healthy is true when every layer is healthy.
	Healthy bool `json:"healthy"`
	// layers lists azure, tailscale, cilium and node, in that order; a layer
	// not yet checked is reported with reason NotChecked.
	// +listType=map
	// +listMapKey=layer
	Layers []RouteLayerStatus `json:"layers"`
}
