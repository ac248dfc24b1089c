package validation

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// checkErrors fails unless every error names a field under one of roots
// and is of a known type: clients act on the path, and a rejection that
// names no field leaves them guessing.
func checkErrors(t *testing.T, errs field.ErrorList, roots ...string) {
	t.Helper()
	for _, e := range errs {
		if e == nil {
			t.Fatal("nil error in the list")
		}
		root := e.Field
		if i := strings.IndexAny(root, ".["); i >= 0 {
			root = root[:i]
		}
		ok := false
		for _, r := range roots {
			ok = ok || root == r
		}
		if !ok {
			t.Fatalf("error %q names field %q, not one under %v", e.Error(), e.Field, roots)
		}
		if strings.HasPrefix(e.Type.String(), "unrecognized") {
			t.Fatalf("error %q has an unknown type %q", e.Error(), e.Type)
		}
	}
}

// FuzzValidateServer fills a Server's metadata and spec with values from
// the fuzzer. Validation must not panic, must name a field in every error,
// must leave the object alone, and whatever it accepts must be usable by
// the code that reads it: the name as the value of label
// stargate.io/server, addresses and the pod CIDR in the canonical form the
// controllers compare strings in, the host key as a pinned SSH key, and
// the object must pass its own unchanged update and its first status.
func FuzzValidateServer(f *testing.F) {
	f.Add("worker-1", "worker-1", "10.50.1.11", "52:54:00:12:34:56", "100.64.0.1", int32(22), testHostKey, "default", "10.244.10.0/24", false)
	f.Add("worker-1", "worker-1", "2001:db8::11", "", "", int32(0), "", "default", "2001:db8:1::/64", false)
	f.Add(strings.Repeat("w", 64), "worker-1", "10.50.1.11", "", "", int32(22), "", "default", "", false)
	f.Add("w.example", "w", "::ffff:10.50.1.11", "52-54-00-12-34-56", "10.50.1.11", int32(70000), "ssh-dss AAAA", "Bad", "10.244.1.5/24", true)
	f.Add("worker-1", "worker-1", "010.050.001.011", "52:54:00:12:34:5G", "fe80::1%eth0", int32(-1), testHostKey+"\n"+testHostKey, "", "10.244.0.0/30", false)
	f.Fuzz(func(t *testing.T, name, hostname, ip, mac, routerIP string, sshPort int32, hostKey, profile, podCIDR string, noProfile bool) {
		s := &stargate.Server{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "dc-east", ResourceVersion: "1"},
			Spec: stargate.ServerSpec{
				Hostname: hostname, IPAddress: ip, MACAddress: mac, RouterIP: routerIP, SSHPort: sshPort,
				HostKey: hostKey, ProvisioningProfileRef: &stargate.LocalObjectReference{Name: profile}, PodCIDR: podCIDR,
			},
		}
		if noProfile {
			s.Spec.ProvisioningProfileRef = nil
		}
		before := s.DeepCopy()
		errs := ValidateServer(s)
		checkErrors(t, errs, "metadata", "spec")
		if !apiequality.Semantic.DeepEqual(s, before) {
			t.Fatalf("validation changed the Server: %#v, was %#v", s, before)
		}
		if len(errs) > 0 {
			return
		}
		for _, msg := range utilvalidation.IsValidLabelValue(s.Name) {
			t.Errorf("accepted name %q is no label value, so label %s on its Node and Operations is refused: %s", s.Name, stargate.LabelServer, msg)
		}
		for _, msg := range utilvalidation.IsDNS1123Subdomain(s.Spec.Hostname) {
			t.Errorf("accepted hostname %q is no Node name: %s", s.Spec.Hostname, msg)
		}
		canonicalAddr(t, "ipAddress", s.Spec.IPAddress)
		if s.Spec.RouterIP != "" {
			canonicalAddr(t, "routerIP", s.Spec.RouterIP)
		}
		if s.Spec.PodCIDR != "" {
			p, err := netip.ParsePrefix(s.Spec.PodCIDR)
			if err != nil || p.Masked().String() != s.Spec.PodCIDR {
				t.Errorf("accepted pod CIDR %q is not a canonical prefix (%v, %v): IPAM and Cilium compare them as strings", s.Spec.PodCIDR, p, err)
			}
		}
		if s.Spec.MACAddress != "" {
			if hw, err := net.ParseMAC(s.Spec.MACAddress); err != nil || len(hw) != 6 {
				t.Errorf("accepted MAC %q: %v", s.Spec.MACAddress, err)
			}
		}
		if s.Spec.SSHPort < 1 || s.Spec.SSHPort > 65535 {
			t.Errorf("accepted SSH port %d", s.Spec.SSHPort)
		}
		if s.Spec.HostKey != "" {
			if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.Spec.HostKey)); err != nil {
				t.Errorf("accepted host key %q cannot be pinned: %v", s.Spec.HostKey, err)
			}
		}
		if errs := ValidateServerUpdate(s.DeepCopy(), s); len(errs) > 0 {
			t.Errorf("accepted Server refused as its own update: %v", errs)
		}
		created := s.DeepCopy()
		created.Status = stargate.ServerStatus{Phase: stargate.ServerPending}
		if errs := ValidateServerStatusUpdate(created, s); len(errs) > 0 {
			t.Errorf("accepted Server refused its first status: %v", errs)
		}
	})
}

func canonicalAddr(t *testing.T, fld, value string) {
	t.Helper()
	a, err := netip.ParseAddr(value)
	if err != nil || a.String() != value || a.Is4In6() || a.Zone() != "" {
		t.Errorf("accepted %s %q is not a canonical address (%v, %v): CSR approval compares it as a string", fld, value, a, err)
	}
}

// maxStatusBytes is the most bytes of strings an accepted Server status
// can hold, from the bounds of validation: what a status writer can make
// the object grow by.
const maxStatusBytes = MaxConditions*(317+len("Unknown")+1024+MaxMessageLength) +
	4*(len("tailscale")+MaxRouteLayerReasonLength+MaxMessageLength+2*MaxRoutesPerLayer*MaxRouteLength) +
	len(stargate.ServerProvisioning) + 253 + len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128") + 253

// TestStatusBoundsFitEtcd checks that the bounds together keep a Server's
// status under etcd's default request limit (1.5 MiB), with room for the
// rest of the object.
func TestStatusBoundsFitEtcd(t *testing.T) {
	const etcdLimit = 3 * 1024 * 1024 / 2
	if maxStatusBytes > etcdLimit-64*1024 {
		t.Errorf("a status can hold %d bytes of strings, too close to etcd's %d", maxStatusBytes, etcdLimit)
	}
}

func statusBytes(st *stargate.ServerStatus) int {
	n := len(st.Phase) + len(st.NodeName) + len(st.PodCIDR) + len(st.LastOperation)
	for _, c := range st.Conditions {
		n += len(c.Type) + len(c.Status) + len(c.Reason) + len(c.Message)
	}
	for _, l := range st.Routes {
		n += len(l.Layer) + len(l.Reason) + len(l.Message)
		for _, r := range append(append([]string(nil), l.Desired...), l.Observed...) {
			n += len(r)
		}
	}
	return n
}

// FuzzValidateServerStatus fills a Server's status, as the node agent or
// a controller writes it, with values and counts from the fuzzer. Every
// error must name a field under status; an accepted status must stay
// within maxStatusBytes and be made of parts its readers take: condition
// reasons and layer reasons as metav1 reads them, known layers once each.
func FuzzValidateServerStatus(f *testing.F) {
	f.Add("Ready", "worker-1", "10.244.10.0/24", "worker-1-repave-abcde", int64(1),
		stargate.ConditionNodeRoutesHealthy, "True", "RoutesHealthy", "routes are right", uint8(2), true,
		"node", "RoutesHealthy", "routes are right", "10.244.0.0/16 via 10.50.1.1 dev eth0", uint8(3), uint8(1))
	f.Add("Exploded", "Worker_1", "10.244.10.5/24", "", int64(-1),
		"bad type!", "Maybe", "not a reason", strings.Repeat("m", 100), uint8(40), false,
		"bgp", "Bad reason!", "", strings.Repeat("r", 2000), uint8(40), uint8(6))
	f.Fuzz(func(t *testing.T, phase, nodeName, podCIDR, lastOp string, observedGen int64,
		condType, condStatus, condReason, condMessage string, nConds uint8, condTime bool,
		layer, layerReason, layerMessage, route string, nRoutes, nLayers uint8) {
		old := &stargate.Server{ObjectMeta: metav1.ObjectMeta{Name: "worker-1", Namespace: "dc-east", ResourceVersion: "1"}}
		s := old.DeepCopy()
		st := &s.Status
		st.Phase, st.NodeName, st.PodCIDR, st.LastOperation, st.ObservedGeneration = stargate.ServerPhase(phase), nodeName, podCIDR, lastOp, observedGen
		var when metav1.Time
		if condTime {
			when = metav1.NewTime(time.Unix(1700000000, 0))
		}
		for i := 0; i < int(nConds%(MaxConditions+8)); i++ {
			typ := condType
			if i > 0 {
				typ = fmt.Sprintf("%s%d", condType, i)
			}
			st.Conditions = append(st.Conditions, metav1.Condition{Type: typ, Status: metav1.ConditionStatus(condStatus),
				Reason: condReason, Message: condMessage, LastTransitionTime: when})
		}
		routes := make([]string, int(nRoutes)%(MaxRoutesPerLayer+8))
		for i := range routes {
			routes[i] = route
		}
		layers := append([]stargate.RouteLayer{stargate.RouteLayer(layer)}, stargate.AllRouteLayers...)
		for i := 0; i < int(nLayers)%(len(layers)+2); i++ {
			st.Routes = append(st.Routes, stargate.RouteLayerStatus{Layer: layers[i%len(layers)], Desired: routes, Observed: routes,
				Reason: layerReason, Message: layerMessage})
		}
		before := s.DeepCopy()
		errs := ValidateServerStatusUpdate(s, old)
		checkErrors(t, errs, "status")
		if !apiequality.Semantic.DeepEqual(s, before) {
			t.Fatal("validation changed the Server")
		}
		if len(errs) > 0 {
			return
		}
		if n := statusBytes(st); n > maxStatusBytes {
			t.Errorf("accepted a status of %d bytes, more than the bound %d", n, maxStatusBytes)
		}
		if len(st.Conditions) > MaxConditions || len(st.Routes) > len(stargate.AllRouteLayers) {
			t.Errorf("accepted %d conditions and %d route layers", len(st.Conditions), len(st.Routes))
		}
		seen := map[stargate.RouteLayer]bool{}
		for _, l := range st.Routes {
			if seen[l.Layer] {
				t.Errorf("accepted layer %q twice", l.Layer)
			}
			seen[l.Layer] = true
			if l.Reason != "" && len(metav1validation.IsValidConditionReason(l.Reason)) > 0 {
				t.Errorf("accepted layer reason %q", l.Reason)
			}
		}
	})
}

// FuzzValidateProvisioningProfile fills a ProvisioningProfile with values
// from the fuzzer. Validation must not panic, must name a field in every
// error and leave the object alone; an accepted profile must give a
// kubelet version the script can install (1.x) and node labels and taints
// that the Node registering with them is allowed: taints rendered as
// --register-with-taints "key=value:Effect" parse back to themselves and
// are unique by key and effect, as Node validation wants.
func FuzzValidateProvisioningProfile(f *testing.F) {
	f.Add("default", "1.33", "containerd", "ssh", "", "ubuntu", "", "", "example.com/rack", "r1", "example.com/dc", "east", "NoSchedule", uint8(1), uint8(0))
	f.Add("default", "v1.33.2", "", "ssh", "ts", "_admin", "scripts", "ubuntu.sh", "node-role.kubernetes.io/worker", "", "example.com/dc", "", "NoExecute", uint8(2), uint8(7))
	f.Add("default", "1.33", "containerd", "ssh", "", "ubuntu", "", "", "example.com/rack", "r1", "example.com/dc", "east", "NoSchedule", uint8(4), uint8(6))
	f.Add("Bad", "1.033", "docker", "", "Bad!", "Admin", "scripts", "../x", "bad key!", "bad value!", "a=b", "c:d", "Sometimes", uint8(3), uint8(2))
	f.Fuzz(func(t *testing.T, name, kubeVersion, runtime, sshRef, tsRef, user, scriptName, scriptKey,
		labelKey, labelValue, taintKey, taintValue, taintEffect string, nTaints, nils uint8) {
		p := &stargate.ProvisioningProfile{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "dc-east", ResourceVersion: "1"},
			Spec: stargate.ProvisioningProfileSpec{
				KubernetesVersion:         kubeVersion,
				ContainerRuntime:          stargate.ContainerRuntime(runtime),
				SSHCredentialsSecretRef:   &stargate.LocalObjectReference{Name: sshRef},
				TailscaleAuthKeySecretRef: &stargate.LocalObjectReference{Name: tsRef},
				AdminUsername:             user,
				BootstrapScriptRef:        &stargate.ConfigMapKeyReference{Name: scriptName, Key: scriptKey},
				NodeLabels:                map[string]string{labelKey: labelValue},
			},
		}
		if nils&1 != 0 {
			p.Spec.SSHCredentialsSecretRef = nil
		}
		if nils&2 != 0 {
			p.Spec.TailscaleAuthKeySecretRef = nil
		}
		if nils&4 != 0 {
			p.Spec.BootstrapScriptRef = nil
		}
		// Taints of the fuzzer's key with each effect in turn, so a
		// count past three repeats a key and effect.
		effects := []stargate.TaintEffect{stargate.TaintEffect(taintEffect), stargate.TaintEffectNoSchedule, stargate.TaintEffectNoExecute}
		for i := 0; i < int(nTaints%6); i++ {
			p.Spec.NodeTaints = append(p.Spec.NodeTaints, stargate.Taint{Key: taintKey, Value: taintValue, Effect: effects[i%len(effects)]})
		}
		before := p.DeepCopy()
		errs := ValidateProvisioningProfile(p)
		checkErrors(t, errs, "metadata", "spec")
		if !apiequality.Semantic.DeepEqual(p, before) {
			t.Fatal("validation changed the ProvisioningProfile")
		}
		if len(errs) > 0 {
			return
		}
		if errs := ValidateProvisioningProfileUpdate(p.DeepCopy(), p); len(errs) > 0 {
			t.Errorf("accepted profile refused as its own update: %v", errs)
		}
		v, err := version.ParseGeneric(p.Spec.KubernetesVersion)
		if err != nil || v.Major() != 1 {
			t.Errorf("accepted kubernetesVersion %q is no Kubernetes 1.x version: %v", p.Spec.KubernetesVersion, err)
		}
		if errs := metav1validation.ValidateLabels(p.Spec.NodeLabels, field.NewPath("labels")); len(errs) > 0 {
			t.Errorf("accepted node labels a Node may not carry: %v", errs)
		}
		seen := map[string]bool{}
		for _, tt := range p.Spec.NodeTaints {
			// As the operations controller renders them for the script.
			rendered := fmt.Sprintf("%s=%s:%s", tt.Key, tt.Value, tt.Effect)
			kv, effect, ok := strings.Cut(rendered, ":")
			key, value, _ := strings.Cut(kv, "=")
			if !ok || strings.Contains(effect, ":") || key != tt.Key || value != tt.Value || effect != string(tt.Effect) {
				t.Errorf("accepted taint %+v renders as %q, which parses as key %q value %q effect %q", tt, rendered, key, value, effect)
			}
			if seen[tt.Key+":"+string(tt.Effect)] {
				t.Errorf("accepted taint %s:%s twice: the Node would be refused", tt.Key, tt.Effect)
			}
			seen[tt.Key+":"+string(tt.Effect)] = true
		}
	})
}
