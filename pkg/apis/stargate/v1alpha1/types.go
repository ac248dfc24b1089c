package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Datacenter declares a datacenter: the namespace its Servers, profiles,
// Secrets and Operations live in, and its network. A namespace is a
// datacenter only when a Datacenter names it, and only cluster admins
// create Datacenters: a datacenter operator, whose roles are bound in the
// namespace, works inside the network the admin declared here.
type Datacenter struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`

	// spec declares the datacenter's namespace and network.
	// +optional
	Spec DatacenterSpec `json:"spec,omitempty" protobuf:"bytes,2,opt,name=spec"`
	// status is what Stargate observed of the datacenter.
	// +optional
	Status DatacenterStatus `json:"status,omitempty" protobuf:"bytes,3,opt,name=status"`
}

// DatacenterSpec declares a datacenter's namespace and network.
type DatacenterSpec struct {
	// namespace is the namespace of the datacenter's Servers, profiles,
	// Secrets and Operations, a DNS label. At most one Datacenter names a
	// namespace, and it cannot change once set.
	// +required
	Namespace string `json:"namespace" protobuf:"bytes,1,opt,name=namespace"`
	// workerSubnet is the CIDR of the servers' own addresses, in canonical
	// form (e.g. 10.50.1.0/24): every Server of the datacenter has its
	// spec.ipAddress in it.
	// +required
	WorkerSubnet string `json:"workerSubnet" protobuf:"bytes,2,opt,name=workerSubnet"`
	// router is the datacenter router: the SSH jump host to the workers and
	// the tailnet device that advertises the worker subnet and pod CIDRs.
	// +required
	Router DatacenterRouter `json:"router" protobuf:"bytes,3,opt,name=router"`
	// agentGateway is the router's address in the worker subnet: the next
	// hop through which the workers reach the cluster's pod and service
	// CIDRs, and which the node agent checks their routes against.
	// +required
	AgentGateway string `json:"agentGateway" protobuf:"bytes,4,opt,name=agentGateway"`
	// podCIDRBlock, when set, is the CIDR (canonical form) every pinned
	// spec.podCIDR of the datacenter's Servers must lie in. It must not
	// overlap workerSubnet.
	// +optional
	PodCIDRBlock string `json:"podCIDRBlock,omitempty" protobuf:"bytes,5,opt,name=podCIDRBlock"`
}

// DatacenterRouter is how Stargate reaches a datacenter's router.
type DatacenterRouter struct {
	// ip is the router's tailnet address. Every Server of the datacenter
	// names it as its spec.routerIP.
	// +required
	IP string `json:"ip" protobuf:"bytes,1,opt,name=ip"`
}

// DatacenterStatus is what Stargate observed of a datacenter.
type DatacenterStatus struct {
	// observedGeneration is the spec generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty" protobuf:"varint,1,opt,name=observedGeneration"`
	// conditions: Ready says whether the datacenter's network is usable.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" protobuf:"bytes,2,rep,name=conditions"`
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
	Tailscale []TailscaleRouteRecord `json:"tailscale,omitempty" protobuf:"bytes,3,rep,name=tailscale"`
}

// TailscaleRouteRecord is what Stargate did on one tailnet device for a
// datacenter.
type TailscaleRouteRecord struct {
	// tailnetIP is the device's tailnet address: the datacenter's router,
	// or the AKS router.
	// +required
	TailnetIP string `json:"tailnetIP" protobuf:"bytes,1,opt,name=tailnetIP"`
	// deviceID is the node ID of the device the routes were enabled on.
	// A device that now has the address under another ID is another
	// device: routes enabled on it are not Stargate's.
	// +optional
	DeviceID string `json:"deviceID,omitempty" protobuf:"bytes,2,opt,name=deviceID"`
	// enabled are the routes (canonical CIDRs) Stargate enabled on the
	// device that were not enabled before.
	// +optional
	// +listType=set
	Enabled []string `json:"enabled,omitempty" protobuf:"bytes,3,rep,name=enabled"`
	// advertised are the routes Stargate made the router advertise that
	// it did not advertise before (datacenter routers only).
	// +optional
	// +listType=set
	Advertised []string `json:"advertised,omitempty" protobuf:"bytes,4,rep,name=advertised"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// DatacenterList is a list of Datacenters.
type DatacenterList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`
	// items are the Datacenters.
	Items []Datacenter `json:"items" protobuf:"bytes,2,rep,name=items"`
}

// +genclient
// +genclient:method=Repave,verb=create,subresource=repave,input=RepaveRequest,result=Operation
// +genclient:method=Reboot,verb=create,subresource=reboot,input=RebootRequest,result=Operation
// +genclient:method=GetRoutes,verb=get,subresource=routes,result=ServerRoutes
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Server is a bare-metal or virtual machine in a remote datacenter that
// Stargate turns into a worker node of the cluster. Servers live in a
// namespace per datacenter.
type Server struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`

	// spec is the desired state of the server: how to reach it and how to provision it.
	// +optional
	Spec ServerSpec `json:"spec,omitempty" protobuf:"bytes,2,opt,name=spec"`
	// status is what Stargate observed and did: phase, node, pod CIDR, conditions and route health.
	// +optional
	Status ServerStatus `json:"status,omitempty" protobuf:"bytes,3,opt,name=status"`
}

// ServerSpec says how to reach a server and how to provision it.
type ServerSpec struct {
	// hostname is the server's host name and the name of the Kubernetes Node it
	// becomes. It must be a DNS-1123 label and cannot change once set.
	// +required
	Hostname string `json:"hostname" protobuf:"bytes,1,opt,name=hostname"`
	// ipAddress is the server's address in the datacenter's worker subnet,
	// where it is reached over SSH.
	// +required
	IPAddress string `json:"ipAddress" protobuf:"bytes,2,opt,name=ipAddress"`
	// macAddress is the MAC address of the server's primary interface, in
	// colon-separated hexadecimal form (e.g. 52:54:00:12:34:56).
	// +optional
	MACAddress string `json:"macAddress,omitempty" protobuf:"bytes,3,opt,name=macAddress"`
	// routerIP is the tailnet IP of the datacenter router, used as SSH jump
	// host to reach the server. Empty means the server is reached directly.
	// +optional
	RouterIP string `json:"routerIP,omitempty" protobuf:"bytes,4,opt,name=routerIP"`
	// sshPort is the TCP port of the server's SSH daemon. Defaults to 22.
	// +optional
	// +default=22
	SSHPort int32 `json:"sshPort,omitempty" protobuf:"varint,5,opt,name=sshPort"`
	// hostKey pins the server's SSH host key, in authorized_keys form
	// ("ssh-ed25519 AAAA..."). When set, a connection presenting any other
	// key is refused. When empty, the known_hosts entry of the profile's SSH
	// credentials Secret is used.
	// +optional
	HostKey string `json:"hostKey,omitempty" protobuf:"bytes,6,opt,name=hostKey"`
	// provisioningProfileRef names the ProvisioningProfile, in the same
	// namespace, that says how to provision this server. A repave may name
	// another; without either, the repave is refused. (The original
	// Stargate's Servers name none: their Operations do.)
	// +optional
	ProvisioningProfileRef *LocalObjectReference `json:"provisioningProfileRef,omitempty" protobuf:"bytes,7,opt,name=provisioningProfileRef"`
	// podCIDR pins the pod CIDR of this server's node. Empty means Stargate
	// allocates one from its pool.
	// +optional
	PodCIDR string `json:"podCIDR,omitempty" protobuf:"bytes,8,opt,name=podCIDR"`
}

// LocalObjectReference names an object in the same namespace.
// +structType=atomic
type LocalObjectReference struct {
	// name of the referent.
	// +required
	Name string `json:"name" protobuf:"bytes,1,opt,name=name"`
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
	Phase ServerPhase `json:"phase,omitempty" protobuf:"bytes,1,opt,name=phase,casttype=ServerPhase"`
	// nodeName is the name of the Node this server registered as.
	// +optional
	NodeName string `json:"nodeName,omitempty" protobuf:"bytes,2,opt,name=nodeName"`
	// podCIDR is the pod CIDR allocated to this server's node.
	// +optional
	PodCIDR string `json:"podCIDR,omitempty" protobuf:"bytes,3,opt,name=podCIDR"`
	// lastOperation is the name of the most recent Operation on this server.
	// +optional
	LastOperation string `json:"lastOperation,omitempty" protobuf:"bytes,4,opt,name=lastOperation"`
	// observedGeneration is the spec generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty" protobuf:"varint,5,opt,name=observedGeneration"`
	// conditions: Provisioned, NodeReady, RoutesReady (with one condition per
	// route layer) and Ready, which summarises them.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" protobuf:"bytes,6,rep,name=conditions"`
	// routes is the health of this server's routes on each layer.
	// +optional
	// +listType=map
	// +listMapKey=layer
	Routes []RouteLayerStatus `json:"routes,omitempty" protobuf:"bytes,7,rep,name=routes"`
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
	Layer RouteLayer `json:"layer" protobuf:"bytes,1,opt,name=layer,casttype=RouteLayer"`
	// desired are the routes (CIDRs, with next hop where it matters) this
	// layer should carry for the server.
	// +optional
	// +listType=atomic
	Desired []string `json:"desired,omitempty" protobuf:"bytes,2,rep,name=desired"`
	// observed are the routes found on this layer when last checked.
	// +optional
	// +listType=atomic
	Observed []string `json:"observed,omitempty" protobuf:"bytes,3,rep,name=observed"`
	// healthy is true when observed matches desired.
	Healthy bool `json:"healthy" protobuf:"varint,4,opt,name=healthy"`
	// reason is a CamelCase word saying why the layer is (un)healthy.
	// +optional
	Reason string `json:"reason,omitempty" protobuf:"bytes,5,opt,name=reason"`
	// message says what is missing or wrong, for a person.
	// +optional
	Message string `json:"message,omitempty" protobuf:"bytes,6,opt,name=message"`
	// lastChecked is when the layer was last checked.
	// +optional
	LastChecked *metav1.Time `json:"lastChecked,omitempty" protobuf:"bytes,7,opt,name=lastChecked"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ServerList is a list of Servers.
type ServerList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`
	// items are the Servers.
	Items []Server `json:"items" protobuf:"bytes,2,rep,name=items"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ProvisioningProfile says how a Server becomes a node: the Kubernetes
// version, container runtime, credentials and node labels and taints.
type ProvisioningProfile struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`

	// spec is the profile.
	// +optional
	Spec ProvisioningProfileSpec `json:"spec,omitempty" protobuf:"bytes,2,opt,name=spec"`
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
	KubernetesVersion string `json:"kubernetesVersion" protobuf:"bytes,1,opt,name=kubernetesVersion"`
	// containerRuntime is the container runtime to install. Defaults to containerd.
	// +optional
	// +default="containerd"
	ContainerRuntime ContainerRuntime `json:"containerRuntime,omitempty" protobuf:"bytes,2,opt,name=containerRuntime,casttype=ContainerRuntime"`
	// sshCredentialsSecretRef names a Secret of type kubernetes.io/ssh-auth,
	// in the same namespace, holding the private key for adminUsername and
	// optionally a known_hosts entry.
	// +required
	SSHCredentialsSecretRef *LocalObjectReference `json:"sshCredentialsSecretRef" protobuf:"bytes,3,opt,name=sshCredentialsSecretRef"`
	// tailscaleAuthKeySecretRef names a Secret, in the same namespace, with a
	// Tailscale auth key for workers that join the tailnet themselves.
	// +optional
	TailscaleAuthKeySecretRef *LocalObjectReference `json:"tailscaleAuthKeySecretRef,omitempty" protobuf:"bytes,4,opt,name=tailscaleAuthKeySecretRef"`
	// adminUsername is the user Stargate logs in as over SSH; it must be able to sudo.
	// +required
	AdminUsername string `json:"adminUsername" protobuf:"bytes,5,opt,name=adminUsername"`
	// bootstrapScriptRef names a ConfigMap key, in the same namespace, holding
	// a node bootstrap script to run instead of Stargate's own (e.g. for
	// air-gapped package mirrors).
	// +optional
	BootstrapScriptRef *ConfigMapKeyReference `json:"bootstrapScriptRef,omitempty" protobuf:"bytes,6,opt,name=bootstrapScriptRef"`
	// nodeLabels are added to the Node at registration.
	// +optional
	NodeLabels map[string]string `json:"nodeLabels,omitempty" protobuf:"bytes,7,rep,name=nodeLabels"`
	// nodeTaints are added to the Node at registration.
	// +optional
	// +listType=atomic
	NodeTaints []Taint `json:"nodeTaints,omitempty" protobuf:"bytes,8,rep,name=nodeTaints"`
	// drainTimeout bounds the drain before a repave, reboot or
	// decommission of a server with this profile. Defaults to 5m.
	// +optional
	DrainTimeout *metav1.Duration `json:"drainTimeout,omitempty" protobuf:"bytes,9,opt,name=drainTimeout"`
}

// ConfigMapKeyReference names a key of a ConfigMap in the same namespace.
// +structType=atomic
type ConfigMapKeyReference struct {
	// name of the ConfigMap.
	// +required
	Name string `json:"name" protobuf:"bytes,1,opt,name=name"`
	// key in the ConfigMap's data.
	// +required
	Key string `json:"key" protobuf:"bytes,2,opt,name=key"`
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
	Key string `json:"key" protobuf:"bytes,1,opt,name=key"`
	// value of the taint.
	// +optional
	Value string `json:"value,omitempty" protobuf:"bytes,2,opt,name=value"`
	// effect is NoSchedule, PreferNoSchedule or NoExecute.
	// +required
	Effect TaintEffect `json:"effect" protobuf:"bytes,3,opt,name=effect,casttype=TaintEffect"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ProvisioningProfileList is a list of ProvisioningProfiles.
type ProvisioningProfileList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`
	// items are the ProvisioningProfiles.
	Items []ProvisioningProfile `json:"items" protobuf:"bytes,2,rep,name=items"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Operation is one run of an action on a Server, such as a repave. Its spec
// cannot change once created; its status records each step.
type Operation struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`

	// spec says what to do to which server. It is immutable.
	// +optional
	Spec OperationSpec `json:"spec,omitempty" protobuf:"bytes,2,opt,name=spec"`
	// status records the progress.
	// +optional
	Status OperationStatus `json:"status,omitempty" protobuf:"bytes,3,opt,name=status"`
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
	ServerRef LocalObjectReference `json:"serverRef" protobuf:"bytes,1,opt,name=serverRef"`
	// provisioningProfileRef names the ProvisioningProfile to use.
	// +required
	ProvisioningProfileRef LocalObjectReference `json:"provisioningProfileRef" protobuf:"bytes,2,opt,name=provisioningProfileRef"`
	// operation is what to do. Defaults to Repave.
	// +optional
	// +default="Repave"
	Operation OperationType `json:"operation,omitempty" protobuf:"bytes,3,opt,name=operation,casttype=OperationType"`
	// reason is why the operation was asked for, for the record.
	// +optional
	Reason string `json:"reason,omitempty" protobuf:"bytes,4,opt,name=reason"`
	// force evicts, once drainTimeout has passed, the pods a
	// PodDisruptionBudget still protects (by deleting them), as kubectl
	// drain --disable-eviction does; without it such an Operation fails.
	// +optional
	Force bool `json:"force,omitempty" protobuf:"varint,5,opt,name=force"`
	// drainTimeout bounds the drain of the server's Node; the profile's,
	// or 5m, when empty.
	// +optional
	DrainTimeout *metav1.Duration `json:"drainTimeout,omitempty" protobuf:"bytes,6,opt,name=drainTimeout"`
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
	Name string `json:"name" protobuf:"bytes,1,opt,name=name"`
	// state is Pending, Running, Succeeded or Failed.
	// +required
	State StepState `json:"state" protobuf:"bytes,2,opt,name=state,casttype=StepState"`
	// message says what the step did or why it failed.
	// +optional
	Message string `json:"message,omitempty" protobuf:"bytes,3,opt,name=message"`
	// startTime is when the step started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty" protobuf:"bytes,4,opt,name=startTime"`
	// completionTime is when the step finished.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty" protobuf:"bytes,5,opt,name=completionTime"`
}

// OperationStatus records the progress of an Operation.
type OperationStatus struct {
	// phase is Pending, Running, Succeeded or Failed.
	// +optional
	Phase OperationPhase `json:"phase,omitempty" protobuf:"bytes,1,opt,name=phase,casttype=OperationPhase"`
	// startTime is when the first step started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty" protobuf:"bytes,2,opt,name=startTime"`
	// completionTime is when the operation succeeded or failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty" protobuf:"bytes,3,opt,name=completionTime"`
	// steps are the steps in the order they run.
	// +optional
	// +listType=map
	// +listMapKey=name
	Steps []OperationStep `json:"steps,omitempty" protobuf:"bytes,4,rep,name=steps"`
	// message summarises the outcome for a person.
	// +optional
	Message string `json:"message,omitempty" protobuf:"bytes,5,opt,name=message"`
	// outputTail is the last part of the bootstrap script's output, with secrets redacted.
	// +optional
	OutputTail string `json:"outputTail,omitempty" protobuf:"bytes,6,opt,name=outputTail"`
	// conditions of the operation.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" protobuf:"bytes,7,rep,name=conditions"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// OperationList is a list of Operations.
type OperationList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`
	// items are the Operations.
	Items []Operation `json:"items" protobuf:"bytes,2,rep,name=items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// RepaveRequest is the body of a POST to servers/NAME/repave. It starts a
// repave of the server and is answered with the Operation that runs it.
type RepaveRequest struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`

	// provisioningProfileRef overrides the server's own profile for this repave.
	// +optional
	ProvisioningProfileRef *LocalObjectReference `json:"provisioningProfileRef,omitempty" protobuf:"bytes,2,opt,name=provisioningProfileRef"`
	// reason is why the repave is asked for; it is kept on the Operation.
	// +optional
	Reason string `json:"reason,omitempty" protobuf:"bytes,3,opt,name=reason"`
	// force evicts, once drainTimeout has passed, the pods a
	// PodDisruptionBudget still protects; see OperationSpec.force.
	// +optional
	Force bool `json:"force,omitempty" protobuf:"varint,4,opt,name=force"`
	// drainTimeout bounds the drain; the profile's, or 5m, when empty.
	// +optional
	DrainTimeout *metav1.Duration `json:"drainTimeout,omitempty" protobuf:"bytes,5,opt,name=drainTimeout"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// RebootRequest is the body of a POST to servers/NAME/reboot. It starts a
// reboot of the server (drain, reboot over SSH, wait for the Node to be
// Ready, uncordon) and is answered with the Operation that runs it.
type RebootRequest struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`

	// reason is why the reboot is asked for; it is kept on the Operation.
	// +optional
	Reason string `json:"reason,omitempty" protobuf:"bytes,2,opt,name=reason"`
	// force evicts, once drainTimeout has passed, the pods a
	// PodDisruptionBudget still protects; see OperationSpec.force.
	// +optional
	Force bool `json:"force,omitempty" protobuf:"varint,3,opt,name=force"`
	// drainTimeout bounds the drain; the profile's, or 5m, when empty.
	// +optional
	DrainTimeout *metav1.Duration `json:"drainTimeout,omitempty" protobuf:"bytes,4,opt,name=drainTimeout"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ServerRoutes is what servers/NAME/routes returns: the route health of the
// server on every layer.
type ServerRoutes struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`

	// podCIDR is the server's pod CIDR.
	// +optional
	PodCIDR string `json:"podCIDR,omitempty" protobuf:"bytes,2,opt,name=podCIDR"`
	// healthy is true when every layer is healthy.
	Healthy bool `json:"healthy" protobuf:"varint,3,opt,name=healthy"`
	// layers lists azure, tailscale, cilium and node, in that order; a layer
	// not yet checked is reported with reason NotChecked.
	// +listType=map
	// +listMapKey=layer
	Layers []RouteLayerStatus `json:"layers" protobuf:"bytes,4,rep,name=layers"`
}
