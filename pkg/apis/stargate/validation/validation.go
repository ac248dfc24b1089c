// Package validation checks stargate.io objects. Every rejection names the
// field and says why, as field.ErrorList, so clients see e.g.
// `spec.ipAddress: Invalid value: "10.0.0.300": must be a valid IP address`.
package validation

import (
	"fmt"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"net"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

const (
	// MaxReasonLength bounds the free-text reason of a repave.
	MaxReasonLength = 1024
	// MaxMessageLength bounds status messages: metav1.Condition's own
	// bound on condition messages, used for every other message too.
	MaxMessageLength = 32 * 1024
	// MaxOutputTailLength bounds the script output kept in Operation status.
	MaxOutputTailLength = 64 * 1024

	// The bounds below keep a status writer, above all the node agent,
	// which writes status.routes[layer=node] and two conditions of its own
	// Server, from inflating the object towards etcd's request limit
	// (1.5 MiB by default). They are far above what Stargate writes.

	// MaxConditions bounds status.conditions. A Server carries ten
	// condition types today, an Operation one; the node agent may write
	// two. (Cluster API allows 32; 16 keeps the whole status, with every
	// bound below at its maximum, within etcd's limit.)
	MaxConditions = 16
	// MaxRouteLayerReasonLength bounds status.routes[].reason, a CamelCase
	// word like a condition reason, with metav1.Condition's bound on reasons.
	MaxRouteLayerReasonLength = 1024
	// MaxRoutesPerLayer bounds status.routes[].desired and .observed. A
	// layer lists the routes of one server: a few CIDRs (the node agent's
	// --remote-cidrs, two by default, and the server's pod CIDR), not a
	// routing table.
	MaxRoutesPerLayer = 64
	// MaxRouteLength bounds one entry of status.routes[].desired and
	// .observed: a route as iproute2 prints it ("10.244.0.0/16 via
	// 192.0.2.1 dev eth0 table 100"); 1 KiB holds a multipath IPv6 route
	// with a dozen next hops.
	MaxRouteLength = 1024
	// MaxSteps bounds status.steps of an Operation; a repave has six.
	MaxSteps = 64
	// MaxStepNameLength bounds status.steps[].name, a short word.
	MaxStepNameLength = 128
	// MaxServerNameLength bounds a Server's name: it is the value of the
	// label stargate.io/server on the server's Node and Operations, and a
	// label value has at most 63 characters.
	MaxServerNameLength = utilvalidation.LabelValueMaxLength
)

var (
	kubernetesVersionRE = regexp.MustCompile(`^v?1\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?$`)
	// POSIX user names as useradd accepts them by default.
	usernameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

	supportedRuntimes   = sets.New(stargate.ContainerRuntimeContainerd)
	supportedOperations = sets.New(stargate.OperationRepave, stargate.OperationReboot, stargate.OperationDecommission)
	taintEffects        = sets.New(stargate.TaintEffectNoSchedule, stargate.TaintEffectPreferNoSchedule, stargate.TaintEffectNoExecute)
	serverPhases        = sets.New(stargate.ServerPending, stargate.ServerProvisioning, stargate.ServerReady, stargate.ServerFailed)
	operationPhases     = sets.New(stargate.OperationPending, stargate.OperationRunning, stargate.OperationSucceeded, stargate.OperationFailed)
	stepStates          = sets.New(stargate.StepPending, stargate.StepRunning, stargate.StepSucceeded, stargate.StepFailed)
	routeLayers         = sets.New(stargate.AllRouteLayers...)

	// kubeletLabels are the labels in the kubernetes.io and k8s.io
	// namespaces that a kubelet may set on its own Node, as
	// k8s.io/kubelet/pkg/apis.IsKubeletLabel lists them; a kubelet started
	// with any other label of those namespaces in --node-labels refuses to
	// start.
	kubeletLabels = sets.New(
		"kubernetes.io/hostname",
		"topology.kubernetes.io/zone", "topology.kubernetes.io/region",
		"failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
		"beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
		"kubernetes.io/os", "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
	)
	kubeletLabelNamespaces = []string{"kubelet.kubernetes.io", "node.kubernetes.io"}
)

// ValidateServer validates a new Server.
func ValidateServer(s *stargate.Server) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&s.ObjectMeta, true, ValidateServerName, field.NewPath("metadata"))
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

// ValidateServerName checks a Server's name: a DNS subdomain that is also
// a label value, since it is the value of label stargate.io/server on the
// server's Node and Operations. A generateName prefix is only checked as a
// DNS subdomain: the generated name is cut to fit.
func ValidateServerName(name string, prefix bool) []string {
	msgs := apimachineryvalidation.NameIsDNSSubdomain(name, prefix)
	if !prefix && len(name) > MaxServerNameLength {
		msgs = append(msgs, fmt.Sprintf("must be no more than %d characters: the name is the value of label %s on the server's Node and Operations",
			MaxServerNameLength, stargate.LabelServer))
	}
	return msgs
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
	// Optional, as in the original Stargate, whose Servers named no
	// profile: then each Operation (or repave request) names one.
	if spec.ProvisioningProfileRef != nil {
		allErrs = append(allErrs, validateLocalRef(spec.ProvisioningProfileRef, fldPath.Child("provisioningProfileRef"), "the ProvisioningProfile that says how to provision the server")...)
	}
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
	allErrs = append(allErrs, validateConditions(status.Conditions, fldPath.Child("conditions"))...)
	allErrs = append(allErrs, ValidateRouteLayers(status.Routes, fldPath.Child("routes"))...)
	return allErrs
}

// validateConditions checks conditions as metav1 does, which bounds each
// reason (1 KiB) and message (32 KiB), and bounds their number. Past the
// bound the entries are not checked one by one: the write is refused
// anyway, and the answer stays short.
func validateConditions(conditions []metav1.Condition, fldPath *field.Path) field.ErrorList {
	if len(conditions) > MaxConditions {
		return field.ErrorList{field.TooMany(fldPath, len(conditions), MaxConditions)}
	}
	return metav1validation.ValidateConditions(conditions, fldPath)
}

// ValidateRouteLayers validates the per-layer route health of a Server:
// at most one entry per known layer, and every list and string bounded.
func ValidateRouteLayers(layers []stargate.RouteLayerStatus, fldPath *field.Path) field.ErrorList {
	if len(layers) > len(stargate.AllRouteLayers) {
		return field.ErrorList{field.TooMany(fldPath, len(layers), len(stargate.AllRouteLayers))}
	}
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
		allErrs = append(allErrs, validateRouteList(l.Desired, p.Child("desired"))...)
		allErrs = append(allErrs, validateRouteList(l.Observed, p.Child("observed"))...)
		switch {
		case len(l.Reason) > MaxRouteLayerReasonLength:
			allErrs = append(allErrs, field.TooLong(p.Child("reason"), "", MaxRouteLayerReasonLength))
		case l.Reason != "":
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

// validateRouteList bounds a list of routes and each route's length.
func validateRouteList(routes []string, fldPath *field.Path) field.ErrorList {
	if len(routes) > MaxRoutesPerLayer {
		return field.ErrorList{field.TooMany(fldPath, len(routes), MaxRoutesPerLayer)}
	}
	var allErrs field.ErrorList
	for i, r := range routes {
		if len(r) > MaxRouteLength {
			allErrs = append(allErrs, field.TooLong(fldPath.Index(i), "", MaxRouteLength))
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
	allErrs := validateDrainTimeout(spec.DrainTimeout, fldPath.Child("drainTimeout"))
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
	allErrs = append(allErrs, validateNodeLabels(spec.NodeLabels, fldPath.Child("nodeLabels"))...)
	type taintKey struct {
		key    string
		effect stargate.TaintEffect
	}
	taints := sets.New[taintKey]()
	for i, t := range spec.NodeTaints {
		p := fldPath.Child("nodeTaints").Index(i)
		// As for a Node's own spec.taints: a Node with two taints of one
		// key and effect is refused, so the node could never register.
		if k := (taintKey{t.Key, t.Effect}); taints.Has(k) {
			allErrs = append(allErrs, field.Duplicate(p, fmt.Sprintf("%s:%s", t.Key, t.Effect)))
		} else {
			taints.Insert(k)
		}
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

// validateNodeLabels checks the labels a node registers with
// (kubelet --node-labels): valid labels, and in the kubernetes.io and
// k8s.io namespaces only those a kubelet may set on its own Node, since a
// kubelet given any other refuses to start.
func validateNodeLabels(labels map[string]string, fldPath *field.Path) field.ErrorList {
	allErrs := metav1validation.ValidateLabels(labels, fldPath)
	for _, k := range sets.List(sets.KeySet(labels)) {
		if isKubernetesLabel(k) && !isKubeletLabel(k) {
			allErrs = append(allErrs, field.Invalid(fldPath.Key(k), k,
				fmt.Sprintf("a kubelet may not set this label on its own Node and refuses to start with it; in the kubernetes.io and k8s.io namespaces only %s and labels under %s are allowed",
					strings.Join(sets.List(kubeletLabels), ", "), strings.Join(kubeletLabelNamespaces, " or "))))
		}
	}
	return allErrs
}

func labelNamespace(key string) string {
	ns, _, ok := strings.Cut(key, "/")
	if !ok {
		return ""
	}
	return ns
}

func isKubernetesLabel(key string) bool {
	ns := labelNamespace(key)
	return ns == "kubernetes.io" || strings.HasSuffix(ns, ".kubernetes.io") || ns == "k8s.io" || strings.HasSuffix(ns, ".k8s.io")
}

func isKubeletLabel(key string) bool {
	if kubeletLabels.Has(key) {
		return true
	}
	ns := labelNamespace(key)
	for _, allowed := range kubeletLabelNamespaces {
		if ns == allowed || strings.HasSuffix(ns, "."+allowed) {
			return true
		}
	}
	return false
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
	if !apiequality.Semantic.DeepEqual(o.Spec, old.Spec) {
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
	allErrs = append(allErrs, validateSteps(st.Steps, fldPath.Child("steps"))...)
	if len(st.Message) > MaxMessageLength {
		allErrs = append(allErrs, field.TooLong(fldPath.Child("message"), "", MaxMessageLength))
	}
	if len(st.OutputTail) > MaxOutputTailLength {
		allErrs = append(allErrs, field.TooLong(fldPath.Child("outputTail"), "", MaxOutputTailLength))
	}
	allErrs = append(allErrs, validateConditions(st.Conditions, fldPath.Child("conditions"))...)
	return allErrs
}

// validateSteps checks the steps of an Operation: named uniquely, in a
// known state, bounded in number and size.
func validateSteps(steps []stargate.OperationStep, fldPath *field.Path) field.ErrorList {
	if len(steps) > MaxSteps {
		return field.ErrorList{field.TooMany(fldPath, len(steps), MaxSteps)}
	}
	var allErrs field.ErrorList
	names := sets.New[string]()
	for i, s := range steps {
		p := fldPath.Index(i)
		switch {
		case s.Name == "":
			allErrs = append(allErrs, field.Required(p.Child("name"), ""))
		case len(s.Name) > MaxStepNameLength:
			allErrs = append(allErrs, field.TooLong(p.Child("name"), "", MaxStepNameLength))
		case names.Has(s.Name):
			allErrs = append(allErrs, field.Duplicate(p.Child("name"), s.Name))
		}
		names.Insert(s.Name)
		if !stepStates.Has(s.State) {
			allErrs = append(allErrs, field.NotSupported(p.Child("state"), s.State, sets.List(stepStates)))
		}
		if len(s.Message) > MaxMessageLength {
			allErrs = append(allErrs, field.TooLong(p.Child("message"), "", MaxMessageLength))
		}
	}
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
	return append(allErrs, validateDrainTimeout(spec.DrainTimeout, fldPath.Child("drainTimeout"))...)
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
	return append(allErrs, validateDrainTimeout(r.DrainTimeout, field.NewPath("drainTimeout"))...)
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
