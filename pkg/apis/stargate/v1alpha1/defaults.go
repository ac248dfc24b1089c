package v1alpha1

import "k8s.io/apimachinery/pkg/runtime"

// DefaultSSHPort is the SSH port used when a Server names none.
const DefaultSSHPort = 22

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	return RegisterDefaults(scheme)
}

// SetDefaults_ServerSpec defaults the SSH port.
func SetDefaults_ServerSpec(obj *ServerSpec) {
	if obj.SSHPort == 0 {
		obj.SSHPort = DefaultSSHPort
	}
}

// SetDefaults_ProvisioningProfileSpec defaults the container runtime and,
// as the original Stargate did, the SSH user to ubuntu.
func SetDefaults_ProvisioningProfileSpec(obj *ProvisioningProfileSpec) {
	if obj.ContainerRuntime == "" {
		obj.ContainerRuntime = ContainerRuntimeContainerd
	}
	if obj.AdminUsername == "" {
		obj.AdminUsername = DefaultAdminUsername
	}
}

// SetDefaults_OperationSpec defaults the operation to a repave and spells
// a known operation as the API does: the original Stargate's "repave" is
// Repave.
func SetDefaults_OperationSpec(obj *OperationSpec) {
	if obj.Operation == "" {
		obj.Operation = OperationRepave
	}
	obj.Operation = normalizeOperationType(obj.Operation)
}
