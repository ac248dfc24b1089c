package stargate

// Reasons of a failed Operation (condition Succeeded=False) and of the
// Server's Provisioned condition. Every writer of an Operation's or a
// Server's status uses these; they are part of the API: scripts and
// alerts match on them.
const (
	ReasonServerNotFound      = "ServerNotFound"
	ReasonProfileNotFound     = "ProfileNotFound"
	ReasonCredentialsNotFound = "CredentialsNotFound"
	ReasonCredentialsInvalid  = "CredentialsInvalid"
	// ReasonCredentialsForbidden fails an Operation at once when
	// stargate-controller may not read its datacenter's SSH Secret,
	// Tailscale auth key Secret or script ConfigMap: the admin did not
	// bind the controller's per-datacenter ClusterRole in that namespace.
	// Retrying would not help.
	ReasonCredentialsForbidden = "CredentialsForbidden"
	ReasonScriptNotFound       = "BootstrapScriptNotFound"
	ReasonHostKeyMismatch      = "HostKeyMismatch"
	ReasonHostKeyUnknown       = "HostKeyUnknown"
	ReasonUnreachable          = "Unreachable"
	ReasonAuthenticationFailed = "AuthenticationFailed"
	ReasonScriptFailed         = "BootstrapScriptFailed"
	ReasonInternal             = "InternalError"
	ReasonUnsupported          = "UnsupportedOperation"
	ReasonSucceeded            = "Succeeded"
	ReasonProvisioning         = "Provisioning"
	// ReasonNotClaimed fails an Operation the Server's claim
	// (status.lastOperation, set by POST servers/NAME/repave) does not
	// name: one created directly, or a stale one the Server no longer
	// runs. It runs nothing on the host.
	ReasonNotClaimed = "NotClaimedByServer"
	// ReasonOperationDeleted is the Server's Provisioned reason when its
	// Operation was deleted while it ran; its script was stopped.
	ReasonOperationDeleted = "OperationDeleted"
	// ReasonScriptStopped is the event of an Operation whose runner
	// stopped another Operation's unfinished script on the host before
	// its own started.
	ReasonScriptStopped = "StoppedPreviousScript"
	// ReasonDrainBlocked fails an Operation whose drain did not evict
	// every pod within its timeout (a PodDisruptionBudget kept some) and
	// that did not ask for force.
	ReasonDrainBlocked = "DrainBlocked"
	// ReasonDrainForced is the Warning event of a forced drain that
	// deleted pods a PodDisruptionBudget still protected.
	ReasonDrainForced = "DrainForced"
	// ReasonHostNotReset is the Warning event of a decommission that could
	// not reach the host to reset it: the Node is deleted anyway, the
	// kubelet and its credentials are left on the host.
	ReasonHostNotReset = "HostNotReset"
	// ReasonDecommissioned is the Server's Provisioned reason (and event)
	// after a decommission.
	ReasonDecommissioned = "Decommissioned"
	// ReasonRebootFailed fails a reboot whose command could not be started.
	ReasonRebootFailed = "RebootFailed"
)

// Reasons of the Server's NodeReady condition; ReasonNodeNotReady also
// fails an Operation whose Node did not become Ready in time.
const (
	ReasonNodeReady    = "KubeletReady"
	ReasonNodeNotReady = "NodeNotReady"
	ReasonNodeNotFound = "NodeNotFound"
)

// Reasons of a ServerRollout's conditions.
const (
	ReasonRolloutStarted     = "Started"
	ReasonRolloutPaused      = "Paused"
	ReasonWaitingForCapacity = "WaitingForCapacity"
	ReasonAllSucceeded       = "AllSucceeded"
	ReasonNoServers          = "NoServers"
	ReasonTooManyServers     = "TooManyServers"
	ReasonTooManyFailures    = "TooManyFailures"
	ReasonRolloutFinished    = "Finished"
)

// Reasons of the NodeRoutesHealthy condition (written by the node agent)
// and of the node route layer.
const (
	ReasonRoutesHealthy      = "RoutesHealthy"
	ReasonRouteMissing       = "RouteMissing"
	ReasonWrongNextHop       = "WrongNextHop"
	ReasonPodCIDRRouteMiss   = "PodCIDRRouteMissing"
	ReasonPodCIDRWrongDevice = "PodCIDRRouteWrongDevice"
	ReasonPodCIDRNotAlloc    = "PodCIDRNotAllocated"
	ReasonTargetUnreachable  = "TargetUnreachable"
	ReasonRouteCheckFailed   = "RouteCheckFailed"
	// ReasonNoGateway: the agent knows no next hop to check the routes
	// against.
	ReasonNoGateway = "NoExpectedGateway"
)

// Reasons of the CiliumPodCIDRMatches condition (written by the node agent).
const (
	ReasonPodCIDRMatches      = "PodCIDRMatches"
	ReasonPodCIDRMismatch     = "PodCIDRMismatch"
	ReasonCiliumNodeNotFound  = "CiliumNodeNotFound"
	ReasonCiliumNodeNoPodCIDR = "CiliumNodeHasNoPodCIDR"
	ReasonCiliumUnavailable   = "CiliumNodeUnavailable"
)
