package v1alpha1

import "k8s.io/apimachinery/pkg/util/intstr"

// DefaultRolloutMaxUnavailable is how many Servers a rollout takes down at
// once when it says nothing.
const DefaultRolloutMaxUnavailable = 1

// SetDefaults_ServerRolloutSpec defaults the operation to a repave, one
// Server at a time, stopping at the first failure.
func SetDefaults_ServerRolloutSpec(obj *ServerRolloutSpec) {
	if obj.Operation == "" {
		obj.Operation = OperationRepave
	}
	obj.Operation = normalizeOperationType(obj.Operation)
	if obj.MaxUnavailable == nil {
		v := intstr.FromInt32(DefaultRolloutMaxUnavailable)
		obj.MaxUnavailable = &v
	}
	if obj.MaxFailures == nil {
		var zero int32
		obj.MaxFailures = &zero
	}
}
