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

// SetDefaults_ProvisioningProfileSpec defaults the container runtime.
func SetDefaults_ProvisioningProfileSpec(obj *ProvisioningProfileSpec) {
	if obj.ContainerRuntime == "" {
		obj.ContainerRuntime = ContainerRuntimeContainerd
	}
}

// SetDefaults_OperationSpec defaults the operation to a repave.
func SetDefaults_OperationSpec(obj *OperationSpec) {
	if obj.Operation == "" {
		obj.Operation = OperationRepave
	}
}
