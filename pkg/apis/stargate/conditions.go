package stargate

// Condition types on a Server. Ready summarises the others. A Datacenter
// carries Ready only.
const (
	ConditionReady       = "Ready"
	ConditionProvisioned = "Provisioned"
	ConditionNodeReady   = "NodeReady"
	ConditionRoutesReady = "RoutesReady"

	// One condition per route layer; RoutesReady summarises them.
	ConditionAzureRouteSynced        = "AzureRouteSynced"
	ConditionTailscaleRoutesApproved = "TailscaleRoutesApproved"
	ConditionCiliumPodCIDRSynced     = "CiliumPodCIDRSynced"
	ConditionNodeRoutesHealthy       = "NodeRoutesHealthy"
	ConditionCiliumPodCIDRMatches    = "CiliumPodCIDRMatches"

	// ConditionPodCIDRAllocated says whether the Server holds its pod CIDR.
	ConditionPodCIDRAllocated = "PodCIDRAllocated"

	// ConditionInDatacenter says whether a Datacenter names the Server's
	// namespace and the Server fits that datacenter's network. Stargate
	// repaves, allocates a pod CIDR to and routes only Servers where it is
	// True; where it is False, Ready is False with its reason.
	ConditionInDatacenter = "InDatacenter"
)

// Reasons of the InDatacenter condition; the same reasons fail a repave of
// a Server that is not in its datacenter.
const (
	// ReasonInDatacenterNetwork: the Server's namespace is a datacenter and
	// the Server lies inside its declared network.
	ReasonInDatacenterNetwork = "InDatacenterNetwork"
	// ReasonNoDatacenter: no Datacenter names the Server's namespace.
	ReasonNoDatacenter = "NoDatacenter"
	// ReasonNotInDatacenterNetwork: the Server's spec does not fit its
	// Datacenter (e.g. it was created before the Datacenter was declared).
	ReasonNotInDatacenterNetwork = "NotInDatacenterNetwork"
)

// Finalizers Stargate puts on Servers.
const (
	// FinalizerPodCIDR holds a Server's pod CIDR until its routes are gone.
	FinalizerPodCIDR = "stargate.io/pod-cidr"
	// FinalizerRoutes holds a Server until its routes are removed from
	// every layer; FinalizerPodCIDR is released only after it.
	FinalizerRoutes = "stargate.io/routes"
	// FinalizerDecommission holds a provisioned Server (status.nodeName
	// set) that is deleted until stargate-controller drained its Node,
	// reset the host and deleted the Node (or gave up on the host after
	// --decommission-timeout).
	FinalizerDecommission = "stargate.io/decommission"
)

// Condition types on an Operation.
const (
	ConditionSucceeded = "Succeeded"
)

// Condition types on a ServerRollout, as on a Deployment or Job:
// Progressing while it starts and waits for Operations, then Complete
// (every Server's Operation succeeded) or Failed (more than maxFailures
// failed; its message names where the rollout stopped).
const (
	ConditionRolloutProgressing = "Progressing"
	ConditionRolloutComplete    = "Complete"
	ConditionRolloutFailed      = "Failed"
)

// ReasonNotChecked is the reason of a route layer that has not been checked yet.
const ReasonNotChecked = "NotChecked"

// ReasonNodeNameConflict: a Node or CiliumNode of the Server's hostname
// exists and belongs to another machine (it lacks the Server's labels
// LabelServer and LabelDatacenter); Stargate does not change it.
const ReasonNodeNameConflict = "NodeNameConflict"

// Labels and annotations Stargate puts on objects.
const (
	// LabelServer on a Node or Operation names the Server it belongs to.
	LabelServer = "stargate.io/server"
	// LabelDatacenter on a Node names the datacenter (the Server's namespace).
	LabelDatacenter = "stargate.io/datacenter"
)

// OwnerLabels are the labels that mark a Node or CiliumNode as the one
// Stargate made for Server name in datacenter dc (the Server's namespace).
func OwnerLabels(name, dc string) map[string]string {
	return map[string]string{LabelServer: name, LabelDatacenter: dc}
}

// IsActive says whether an Operation in this phase still holds its server.
func (p OperationPhase) IsActive() bool {
	return p == "" || p == OperationPending || p == OperationRunning
}

// AllRouteLayers lists the route layers in the order they are reported.
var AllRouteLayers = []RouteLayer{RouteLayerAzure, RouteLayerTailscale, RouteLayerCilium, RouteLayerNode}
