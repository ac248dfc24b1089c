package validation

import (
	"fmt"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// MaxRolloutServers bounds how many Servers one ServerRollout may take:
// status.servers lists each, and the whole object must stay far below
// etcd's request limit. Roll a larger datacenter in several rollouts
// (label selectors).
const MaxRolloutServers = 2000

// rolloutOperations are what a rollout may run on many Servers: repaves and
// reboots. A Decommission is a deletion, one Server at a time.
var rolloutOperations = sets.New(stargate.OperationRepave, stargate.OperationReboot)

// rolloutServerStates are the states of one Server of a rollout.
var rolloutServerStates = sets.New(stargate.RolloutServerWaiting, stargate.RolloutServerRunning,
	stargate.RolloutServerSucceeded, stargate.RolloutServerFailed)

// ValidateServerRollout validates a new ServerRollout.
func ValidateServerRollout(r *stargate.ServerRollout) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&r.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, validateServerRolloutSpec(&r.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateServerRolloutUpdate validates an update of a ServerRollout: what
// it runs and on which Servers cannot change; how fast it goes can.
func ValidateServerRolloutUpdate(r, old *stargate.ServerRollout) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&r.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("spec")
	allErrs = append(allErrs, validateServerRolloutSpec(&r.Spec, fldPath)...)
	immutable := "field is immutable: a rollout runs one Operation on the Servers it chose when it started; create a new ServerRollout instead"
	if !apiequality.Semantic.DeepEqual(r.Spec.Selector, old.Spec.Selector) {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("selector"), immutable))
	}
	if r.Spec.Operation != old.Spec.Operation {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("operation"), immutable))
	}
	if !apiequality.Semantic.DeepEqual(r.Spec.ProvisioningProfileRef, old.Spec.ProvisioningProfileRef) {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("provisioningProfileRef"), immutable))
	}
	if r.Spec.Reason != old.Spec.Reason {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("reason"), immutable))
	}
	return allErrs
}

func validateServerRolloutSpec(spec *stargate.ServerRolloutSpec, fldPath *field.Path) field.ErrorList {
	allErrs := metav1validation.ValidateLabelSelector(&spec.Selector, metav1validation.LabelSelectorValidationOptions{}, fldPath.Child("selector"))
	if !rolloutOperations.Has(spec.Operation) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("operation"), spec.Operation, sets.List(rolloutOperations)))
	}
	if spec.ProvisioningProfileRef != nil {
		allErrs = append(allErrs, validateObjectName(spec.ProvisioningProfileRef.Name, fldPath.Child("provisioningProfileRef", "name"), "the ProvisioningProfile each repave uses")...)
	}
	allErrs = append(allErrs, validateMaxUnavailable(spec.MaxUnavailable, fldPath.Child("maxUnavailable"))...)
	if spec.MaxFailures == nil {
		allErrs = append(allErrs, field.Required(fldPath.Child("maxFailures"), "how many Operations may fail before the rollout stops"))
	} else if *spec.MaxFailures < 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("maxFailures"), *spec.MaxFailures, "must be 0 or more"))
	}
	if len(spec.Reason) > MaxReasonLength {
		allErrs = append(allErrs, field.TooLong(fldPath.Child("reason"), "", MaxReasonLength))
	}
	return allErrs
}

// validateMaxUnavailable accepts a number of 1 or more, or a percentage
// from 1% to 100%.
func validateMaxUnavailable(v *intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	if v == nil {
		return field.ErrorList{field.Required(fldPath, "how many Servers may be unavailable at once")}
	}
	switch v.Type {
	case intstr.Int:
		if v.IntVal < 1 {
			return field.ErrorList{field.Invalid(fldPath, v.IntVal, "must be at least 1: a rollout with no Server unavailable cannot start any Operation")}
		}
	case intstr.String:
		p, err := intstr.GetScaledValueFromIntOrPercent(v, 100, false)
		if err != nil || fmt.Sprintf("%d%%", p) != v.StrVal {
			return field.ErrorList{field.Invalid(fldPath, v.StrVal, `must be a number or a percentage such as "30%"`)}
		}
		if p < 1 || p > 100 {
			return field.ErrorList{field.Invalid(fldPath, v.StrVal, "must be between 1% and 100%")}
		}
	}
	return nil
}

// ValidateServerRolloutStatusUpdate validates an update of a rollout's status.
func ValidateServerRolloutStatusUpdate(r, old *stargate.ServerRollout) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&r.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("status")
	st := &r.Status
	if len(st.Servers) > MaxRolloutServers {
		return append(allErrs, field.TooMany(fldPath.Child("servers"), len(st.Servers), MaxRolloutServers))
	}
	names := sets.New[string]()
	for i, s := range st.Servers {
		p := fldPath.Child("servers").Index(i)
		allErrs = append(allErrs, validateObjectName(s.Name, p.Child("name"), "the Server")...)
		if names.Has(s.Name) {
			allErrs = append(allErrs, field.Duplicate(p.Child("name"), s.Name))
		}
		names.Insert(s.Name)
		if !rolloutServerStates.Has(s.State) {
			allErrs = append(allErrs, field.NotSupported(p.Child("state"), s.State, sets.List(rolloutServerStates)))
		}
		if s.Operation != "" {
			allErrs = append(allErrs, validateObjectName(s.Operation, p.Child("operation"), "the Operation")...)
		}
		if len(s.Message) > MaxMessageLength {
			allErrs = append(allErrs, field.TooLong(p.Child("message"), "", MaxMessageLength))
		}
	}
	for name, n := range map[string]int32{"total": st.Total, "succeeded": st.Succeeded, "running": st.Running, "failed": st.Failed, "unavailable": st.Unavailable} {
		if n < 0 {
			allErrs = append(allErrs, field.Invalid(fldPath.Child(name), n, "must be 0 or more"))
		}
	}
	if st.ObservedGeneration < 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("observedGeneration"), st.ObservedGeneration, "must be 0 or more"))
	}
	allErrs = append(allErrs, validateConditions(st.Conditions, fldPath.Child("conditions"))...)
	return allErrs
}
