// Package validation checks stargate.io objects. Every rejection names the
// field and says why, as field.ErrorList, so clients see e.g.
// `spec.ipAddress: Invalid value: "10.0.0.300": must be a valid IP address`.
package validation

import (
	"fmt"
	"net"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

const (
	// MaxReasonLength bounds the free-text reason of a repave.
	MaxReasonLength = 1024
	// MaxMessageLength bounds status messages.
	MaxMessageLength = 32 * 1024
	// MaxOutputTailLength bounds the script output kept in Operation status.
	MaxOutputTailLength = 64 * 1024
)

var (
	kubernetesVersionRE = regexp.MustCompile(`^v?1\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?$`)
	// POSIX user names as useradd accepts them by default.
	usernameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

	supportedRuntimes   = sets.New(stargate.ContainerRuntimeContainerd)
	supportedOperations = sets.New(stargate.OperationRepave)
	taintEffects        = sets.New(stargate.TaintEffectNoSchedule, stargate.TaintEffectPreferNoSchedule, stargate.TaintEffectNoExecute)
	serverPhases        = sets.New(stargate.ServerPending, stargate.ServerProvisioning, stargate.ServerReady, stargate.ServerFailed)
	operationPhases     = sets.New(stargate.OperationPending, stargate.OperationRunning, stargate.OperationSucceeded, stargate.OperationFailed)
	stepStates          = sets.New(stargate.StepPending, stargate.StepRunning, stargate.StepSucceeded, stargate.StepFailed)
	routeLayers         = sets.New(stargate.AllRouteLayers...)
)

// ValidateServer validates a new Server.
func ValidateServer(s *stargate.Server) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&s.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, validateServerSpec(&s.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateServerUpdate validates an update of a Server's metadata and spec.
func ValidateServerUpdate(s, old *stargate.Server) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&s.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	specPath := field.NewPath("spec")
	allErrs = append(allErrs, validateServerSpec(&s.Spec, specPath)...)
	if s.Spec.Hostname != old.Spec.Hostname {
		allErrs = append(allErrs, field.Invalid(specPath.Child("hostname"), s.Spec.Hostname,
			fmt.Sprintf("field is immutable: it is the name of the server's Node (was %q); delete and recreate the Server to rename it", old.Spec.Hostname)))
	}
	if old.Spec.PodCIDR != "" && s.Spec.PodCIDR != old.Spec.PodCIDR {
		allErrs = append(allErrs, field.Invalid(specPath.Child("podCIDR"), s.Spec.PodCIDR,
			fmt.Sprintf("field is immutable once set (was %q): the node's pods are addressed from it", old.Spec.PodCIDR)))
	}
	return allErrs
}

// ValidateServerStatusUpdate validates an update of a Server's status.
func ValidateServerStatusUpdate(s, old *stargate.Server) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&s.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, validateServerStatus(&s.Status, field.NewPath("status"))...)
	return allErrs
}

func validateServerSpec(spec *stargate.ServerSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if spec.Hostname == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("hostname"), "the node name the server registers as"))
	} else {
		for _, msg := range utilvalidation.IsDNS1123Label(spec.Hostname) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("hostname"), spec.Hostname, msg))
		}
	}
	if spec.IPAddress == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("ipAddress"), "the address Stargate reaches the server at over SSH"))
	} else {
		allErrs = append(allErrs, validateUnicastIP(spec.IPAddress, fldPath.Child("ipAddress"))...)
	}
	if spec.MACAddress != "" {
		allErrs = append(allErrs, validateMAC(spec.MACAddress, fldPath.Child("macAddress"))...)
	}
	if spec.RouterIP != "" {
		allErrs = append(allErrs, validateUnicastIP(spec.RouterIP, fldPath.Child("routerIP"))...)
		if spec.RouterIP == spec.IPAddress {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("routerIP"), spec.RouterIP, "must differ from spec.ipAddress: the router is the jump host to the server"))
		}
	}
	for _, msg := range utilvalidation.IsValidPortNum(int(spec.SSHPort)) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("sshPort"), spec.SSHPort, msg))
	}
	if spec.HostKey != "" {
		allErrs = append(allErrs, ValidateHostKey(spec.HostKey, fldPath.Child("hostKey"))...)
	}
	allErrs = append(allErrs, validateLocalRef(spec.ProvisioningProfileRef, fldPath.Child("provisioningProfileRef"), "the ProvisioningProfile that says how to provision the server")...)
	if spec.PodCIDR != "" {
		allErrs = append(allErrs, validatePodCIDR(spec.PodCIDR, fldPath.Child("podCIDR"))...)
	}
	return allErrs
}

func validateServerStatus(status *stargate.ServerStatus, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if status.Phase != "" && !serverPhases.Has(status.Phase) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("phase"), status.Phase, sets.List(serverPhases)))
	}
	if status.NodeName != "" {
		for _, msg := range utilvalidation.IsDNS1123Subdomain(status.NodeName) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("nodeName"), status.NodeName, msg))
		}
	}
	if status.PodCIDR != "" {
		allErrs = append(allErrs, validatePodCIDR(status.PodCIDR, fldPath.Child("podCIDR"))...)
	}
	if status.LastOperation != "" {
		for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(status.LastOperation, false) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("lastOperation"), status.LastOperation, msg))
		}
	}
	if status.ObservedGeneration < 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("observedGeneration"), status.ObservedGeneration, "must not be negative"))
	}
	allErrs = append(allErrs, metav1validation.ValidateConditions(status.Conditions, fldPath.Child("conditions"))...)
	allErrs = append(allErrs, ValidateRouteLayers(status.Routes, fldPath.Child("routes"))...)
	return allErrs
}

// ValidateRouteLayers validates the per-layer route health of a Server.
func ValidateRouteLayers(layers []stargate.RouteLayerStatus, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	seen := sets.New[stargate.RouteLayer]()
	for i, l := range layers {
		p := fldPath.Index(i)
		switch {
		case !routeLayers.Has(l.Layer):
			allErrs = append(allErrs, field.NotSupported(p.Child("layer"), l.Layer, sets.List(routeLayers)))
		case seen.Has(l.Layer):
			allErrs = append(allErrs, field.Duplicate(p.Child("layer"), l.Layer))
		}
		seen.Insert(l.Layer)
		if l.Reason != "" {
			for _, msg := range metav1validation.IsValidConditionReason(l.Reason) {
				allErrs = append(allErrs, field.Invalid(p.Child("reason"), l.Reason, msg))
			}
		}
		if len(l.Message) > MaxMessageLength {
			allErrs = append(allErrs, field.TooLong(p.Child("message"), "", MaxMessageLength))
		}
	}
	return allErrs
}

// ValidateProvisioningProfile validates a new ProvisioningProfile.
func ValidateProvisioningProfile(p *stargate.ProvisioningProfile) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&p.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, validateProfileSpec(&p.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateProvisioningProfileUpdate validates an update of a ProvisioningProfile.
func ValidateProvisioningProfileUpdate(p, old *stargate.ProvisioningProfile) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&p.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, validateProfileSpec(&p.Spec, field.NewPath("spec"))...)
	return allErrs
}

func validateProfileSpec(spec *stargate.ProvisioningProfileSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	switch {
	case spec.KubernetesVersion == "":
		allErrs = append(allErrs, field.Required(fldPath.Child("kubernetesVersion"), `the kubelet version to install, e.g. "1.33" or "1.33.2"`))
	case !kubernetesVersionRE.MatchString(spec.KubernetesVersion):
		allErrs = append(allErrs, field.Invalid(fldPath.Child("kubernetesVersion"), spec.KubernetesVersion,
			`must be a Kubernetes 1.x release as MINOR or MINOR.PATCH, e.g. "1.33" or "1.33.2"`))
	}
	if !supportedRuntimes.Has(spec.ContainerRuntime) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("containerRuntime"), spec.ContainerRuntime, sets.List(supportedRuntimes)))
	}
	allErrs = append(allErrs, validateLocalRef(spec.SSHCredentialsSecretRef, fldPath.Child("sshCredentialsSecretRef"), "a Secret of type kubernetes.io/ssh-auth with the admin user's private key")...)
	if spec.TailscaleAuthKeySecretRef != nil {
		allErrs = append(allErrs, validateLocalRef(spec.TailscaleAuthKeySecretRef, fldPath.Child("tailscaleAuthKeySecretRef"), "")...)
	}
	switch {
	case spec.AdminUsername == "":
		allErrs = append(allErrs, field.Required(fldPath.Child("adminUsername"), "the user Stargate logs in as over SSH"))
	case !usernameRE.MatchString(spec.AdminUsername):
		allErrs = append(allErrs, field.Invalid(fldPath.Child("adminUsername"), spec.AdminUsername,
			"must be a POSIX user name: a lower-case letter or '_', then up to 31 lower-case letters, digits, '_' or '-'"))
	}
	if ref := spec.BootstrapScriptRef; ref != nil {
		p := fldPath.Child("bootstrapScriptRef")
		allErrs = append(allErrs, validateObjectName(ref.Name, p.Child("name"), "the ConfigMap holding the script")...)
		if ref.Key == "" {
			allErrs = append(allErrs, field.Required(p.Child("key"), "the ConfigMap key holding the script"))
		} else {
			for _, msg := range utilvalidation.IsConfigMapKey(ref.Key) {
				allErrs = append(allErrs, field.Invalid(p.Child("key"), ref.Key, msg))
			}
		}
	}
	allErrs = append(allErrs, metav1validation.ValidateLabels(spec.NodeLabels, fldPath.Child("nodeLabels"))...)
	for i, t := range spec.NodeTaints {
		p := fldPath.Child("nodeTaints").Index(i)
		if t.Key == "" {
			allErrs = append(allErrs, field.Required(p.Child("key"), ""))
		} else {
			for _, msg := range utilvalidation.IsQualifiedName(t.Key) {
				allErrs = append(allErrs, field.Invalid(p.Child("key"), t.Key, msg))
			}
		}
		if t.Value != "" {
			for _, msg := range utilvalidation.IsValidLabelValue(t.Value) {
				allErrs = append(allErrs, field.Invalid(p.Child("value"), t.Value, msg))
			}
		}
		if !taintEffects.Has(t.Effect) {
			allErrs = append(allErrs, field.NotSupported(p.Child("effect"), t.Effect, sets.List(taintEffects)))
		}
	}
	return allErrs
}

// ValidateOperation validates a new Operation.
func ValidateOperation(o *stargate.Operation) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&o.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, validateOperationSpec(&o.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateOperationUpdate validates an update of an Operation: its spec is immutable.
func ValidateOperationUpdate(o, old *stargate.Operation) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&o.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, validateOperationSpec(&o.Spec, field.NewPath("spec"))...)
	if o.Spec != old.Spec {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("spec"), "field is immutable: an Operation records one run; create a new Operation (servers/NAME/repave) instead"))
	}
	return allErrs
}

// ValidateOperationStatusUpdate validates an update of an Operation's status.
func ValidateOperationStatusUpdate(o, old *stargate.Operation) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&o.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("status")
	st := &o.Status
	if st.Phase != "" && !operationPhases.Has(st.Phase) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("phase"), st.Phase, sets.List(operationPhases)))
	}
	if !old.Status.Phase.IsActive() && st.Phase != old.Status.Phase {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("phase"), st.Phase,
			fmt.Sprintf("an Operation that has %s cannot change phase; start a new one", old.Status.Phase)))
	}
	steps := sets.New[string]()
	for i, s := range st.Steps {
		p := fldPath.Child("steps").Index(i)
		if s.Name == "" {
			allErrs = append(allErrs, field.Required(p.Child("name"), ""))
		} else if steps.Has(s.Name) {
			allErrs = append(allErrs, field.Duplicate(p.Child("name"), s.Name))
		}
		steps.Insert(s.Name)
		if !stepStates.Has(s.State) {
			allErrs = append(allErrs, field.NotSupported(p.Child("state"), s.State, sets.List(stepStates)))
		}
		if len(s.Message) > MaxMessageLength {
			allErrs = append(allErrs, field.TooLong(p.Child("message"), "", MaxMessageLength))
		}
	}
	if len(st.Message) > MaxMessageLength {
		allErrs = append(allErrs, field.TooLong(fldPath.Child("message"), "", MaxMessageLength))
	}
	if len(st.OutputTail) > MaxOutputTailLength {
		allErrs = append(allErrs, field.TooLong(fldPath.Child("outputTail"), "", MaxOutputTailLength))
	}
	allErrs = append(allErrs, metav1validation.ValidateConditions(st.Conditions, fldPath.Child("conditions"))...)
	return allErrs
}

func validateOperationSpec(spec *stargate.OperationSpec, fldPath *field.Path) field.ErrorList {
	allErrs := validateObjectName(spec.ServerRef.Name, fldPath.Child("serverRef", "name"), "the Server to operate on")
	allErrs = append(allErrs, validateObjectName(spec.ProvisioningProfileRef.Name, fldPath.Child("provisioningProfileRef", "name"), "the ProvisioningProfile to provision with")...)
	if !supportedOperations.Has(spec.Operation) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("operation"), spec.Operation, sets.List(supportedOperations)))
	}
	if len(spec.Reason) > MaxReasonLength {
		allErrs = append(allErrs, field.TooLong(fldPath.Child("reason"), "", MaxReasonLength))
	}
	return allErrs
}

// ValidateRepaveRequest validates the body of a servers/repave call.
func ValidateRepaveRequest(r *stargate.RepaveRequest) field.ErrorList {
	var allErrs field.ErrorList
	if r.ProvisioningProfileRef != nil {
		allErrs = append(allErrs, validateObjectName(r.ProvisioningProfileRef.Name, field.NewPath("provisioningProfileRef", "name"), "the ProvisioningProfile to use for this repave")...)
	}
	if len(r.Reason) > MaxReasonLength {
		allErrs = append(allErrs, field.TooLong(field.NewPath("reason"), "", MaxReasonLength))
	}
	return allErrs
}

// ValidateHostKey checks that key is one SSH public key in authorized_keys form.
func ValidateHostKey(key string, fldPath *field.Path) field.ErrorList {
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return field.ErrorList{field.Invalid(fldPath, key, fmt.Sprintf(`must be one SSH public key in authorized_keys form, e.g. "ssh-ed25519 AAAAC3Nza...": %v`, err))}
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return field.ErrorList{field.Invalid(fldPath, key, "must hold exactly one key")}
	}
	if pub.Type() == ssh.KeyAlgoDSA {
		return field.ErrorList{field.Invalid(fldPath, key, "ssh-dss keys are not accepted: they are insecure and refused by current OpenSSH")}
	}
	return nil
}

func validateLocalRef(ref *stargate.LocalObjectReference, fldPath *field.Path, what string) field.ErrorList {
	if ref == nil {
		return field.ErrorList{field.Required(fldPath, what)}
	}
	return validateObjectName(ref.Name, fldPath.Child("name"), what)
}

func validateObjectName(name string, fldPath *field.Path, what string) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(fldPath, what)}
	}
	var allErrs field.ErrorList
	for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(name, false) {
		allErrs = append(allErrs, field.Invalid(fldPath, name, msg))
	}
	return allErrs
}

func validateUnicastIP(value string, fldPath *field.Path) field.ErrorList {
	if errs := utilvalidation.IsValidIP(fldPath, value); len(errs) > 0 {
		return errs
	}
	ip := net.ParseIP(value)
	if ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() || ip.IsLinkLocalMulticast() {
		return field.ErrorList{field.Invalid(fldPath, value, "must be a unicast address a server can be reached at (not unspecified, loopback or multicast)")}
	}
	return nil
}

func validateMAC(value string, fldPath *field.Path) field.ErrorList {
	hw, err := net.ParseMAC(value)
	if err != nil || len(hw) != 6 || strings.Count(value, ":") != 5 {
		return field.ErrorList{field.Invalid(fldPath, value, "must be a 48-bit MAC address as six colon-separated hex pairs, e.g. 52:54:00:12:34:56")}
	}
	return nil
}

func validatePodCIDR(value string, fldPath *field.Path) field.ErrorList {
	if errs := utilvalidation.IsValidCIDR(fldPath, value); len(errs) > 0 {
		return errs
	}
	_, n, _ := net.ParseCIDR(value)
	ones, bits := n.Mask.Size()
	if bits-ones < 4 {
		return field.ErrorList{field.Invalid(fldPath, value, fmt.Sprintf("prefix /%d leaves too few pod addresses; use at most /%d", ones, bits-4))}
	}
	return nil
}
