package validation

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// MaxDrainTimeout bounds a drain: a day is longer than any PodDisruptionBudget
// should hold a node.
const MaxDrainTimeout = 24 * time.Hour

// ValidateRebootRequest validates the body of a servers/reboot call.
func ValidateRebootRequest(r *stargate.RebootRequest) field.ErrorList {
	var allErrs field.ErrorList
	if len(r.Reason) > MaxReasonLength {
		allErrs = append(allErrs, field.TooLong(field.NewPath("reason"), "", MaxReasonLength))
	}
	return append(allErrs, validateDrainTimeout(r.DrainTimeout, field.NewPath("drainTimeout"))...)
}

// validateDrainTimeout accepts an absent timeout or one from 1s to a day.
func validateDrainTimeout(d *metav1.Duration, fldPath *field.Path) field.ErrorList {
	if d == nil {
		return nil
	}
	if d.Duration < time.Second || d.Duration > MaxDrainTimeout {
		return field.ErrorList{field.Invalid(fldPath, d.Duration.String(), "must be between 1s and 24h")}
	}
	return nil
}
