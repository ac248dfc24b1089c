package agentrestriction

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

func server(name, node string) *stargate.Server {
	return &stargate.Server{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "dc-east", Labels: map[string]string{"rack": "a"}},
		Spec:       stargate.ServerSpec{Hostname: name, IPAddress: "192.0.2.10"},
		Status: stargate.ServerStatus{
			Phase: stargate.ServerReady, NodeName: node, PodCIDR: "10.244.5.0/24",
			Conditions: []metav1.Condition{
				{Type: stargate.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready"},
				{Type: stargate.ConditionNodeRoutesHealthy, Status: metav1.ConditionTrue, Reason: "RoutesPresent"},
			},
			Routes: []stargate.RouteLayerStatus{
				{Layer: stargate.RouteLayerAzure, Healthy: true, Reason: "Synced"},
				{Layer: stargate.RouteLayerNode, Healthy: true, Reason: "RoutesPresent"},
			},
		},
	}
}

var (
	agentSA = "stargate-nodeagent:stargate-nodeagent"
	agent   = func(node ...string) user.Info {
		u := &user.DefaultInfo{Name: serviceaccount.ServiceAccountUsernamePrefix + agentSA, Extra: map[string][]string{}}
		if len(node) > 0 {
			u.Extra[serviceaccount.NodeNameKey] = node
		}
		return u
	}
	admin = &user.DefaultInfo{Name: "admin", Groups: []string{"system:masters"}}
)

func attrs(obj, old runtime.Object, op admission.Operation, resource, sub string, u user.Info) admission.Attributes {
	name := ""
	if s, ok := old.(*stargate.Server); ok {
		name = s.Name
	} else if s, ok := obj.(*stargate.Server); ok {
		name = s.Name
	}
	return admission.NewAttributesRecord(obj, old, stargate.Kind("Server").WithVersion(""), "dc-east", name,
		stargate.Resource(resource).WithVersion(""), sub, op, nil, false, u)
}

func TestValidate(t *testing.T) {
	mutate := func(f func(*stargate.Server)) *stargate.Server {
		s := server("w1", "w1")
		f(s)
		return s
	}
	tests := []struct {
		name     string
		a        admission.Attributes
		wantDeny string // substring of the message; "" means allowed
	}{
		{
			name: "agent updates its node layer and conditions",
			a: attrs(mutate(func(s *stargate.Server) {
				s.Status.Conditions[1].Status = metav1.ConditionFalse
				s.Status.Conditions = append(s.Status.Conditions, metav1.Condition{Type: stargate.ConditionCiliumPodCIDRMatches, Status: metav1.ConditionTrue})
				s.Status.Routes[1].Healthy = false
			}), server("w1", "w1"), admission.Update, "servers", "status", agent("w1")),
		},
		{
			name:     "agent writes another node's server",
			a:        attrs(server("w2", "w2"), server("w2", "w2"), admission.Update, "servers", "status", agent("w1")),
			wantDeny: `Server dc-east/w2 belongs to node "w2"`,
		},
		{
			name:     "agent writes a server with no node yet",
			a:        attrs(server("w1", ""), server("w1", ""), admission.Update, "servers", "status", agent("w1")),
			wantDeny: "belongs to no node yet",
		},
		{
			name:     "agent updates the spec",
			a:        attrs(server("w1", "w1"), server("w1", "w1"), admission.Update, "servers", "", agent("w1")),
			wantDeny: `may only update servers/status of its own Server, not update servers w1`,
		},
		{
			name:     "agent deletes its server",
			a:        attrs(nil, server("w1", "w1"), admission.Delete, "servers", "", agent("w1")),
			wantDeny: "not delete servers w1",
		},
		{
			name:     "agent repaves",
			a:        attrs(&stargate.RepaveRequest{}, nil, admission.Create, "servers", "repave", agent("w1")),
			wantDeny: "not create servers/repave",
		},
		{
			name:     "agent creates an operation",
			a:        attrs(&stargate.Operation{}, nil, admission.Create, "operations", "", agent("w1")),
			wantDeny: "not create operations",
		},
		{
			name: "agent changes another layer",
			a: attrs(mutate(func(s *stargate.Server) { s.Status.Routes[0].Healthy = false }),
				server("w1", "w1"), admission.Update, "servers", "status", agent("w1")),
			wantDeny: "also changes status.routes[layer=azure]",
		},
		{
			name: "agent adds another layer",
			a: attrs(mutate(func(s *stargate.Server) {
				s.Status.Routes = append(s.Status.Routes, stargate.RouteLayerStatus{Layer: stargate.RouteLayerCilium})
			}), server("w1", "w1"), admission.Update, "servers", "status", agent("w1")),
			wantDeny: "status.routes[layer=cilium]",
		},
		{
			name: "agent changes the Ready condition and the phase",
			a: attrs(mutate(func(s *stargate.Server) {
				s.Status.Conditions[0].Status = metav1.ConditionFalse
				s.Status.Phase = stargate.ServerFailed
			}), server("w1", "w1"), admission.Update, "servers", "status", agent("w1")),
			wantDeny: "status.phase, status.conditions[type=Ready]",
		},
		{
			name: "agent removes the Ready condition",
			a: attrs(mutate(func(s *stargate.Server) { s.Status.Conditions = s.Status.Conditions[1:] }),
				server("w1", "w1"), admission.Update, "servers", "status", agent("w1")),
			wantDeny: "status.conditions[type=Ready]",
		},
		{
			name: "agent renames its node and pod CIDR",
			a: attrs(mutate(func(s *stargate.Server) { s.Status.NodeName = "w2"; s.Status.PodCIDR = "10.244.6.0/24" }),
				server("w1", "w1"), admission.Update, "servers", "status", agent("w1")),
			wantDeny: "status.nodeName, status.podCIDR",
		},
		{
			name: "agent relabels through status",
			a: attrs(mutate(func(s *stargate.Server) { s.Labels = map[string]string{"rack": "b"} }),
				server("w1", "w1"), admission.Update, "servers", "status", agent("w1")),
			wantDeny: "metadata.labels",
		},
		{
			name:     "agent token without node name",
			a:        attrs(server("w1", "w1"), server("w1", "w1"), admission.Update, "servers", "status", agent()),
			wantDeny: "the token names no node",
		},
		{
			name:     "agent token with two node names",
			a:        attrs(server("w1", "w1"), server("w1", "w1"), admission.Update, "servers", "status", agent("w1", "w2")),
			wantDeny: "names 2 nodes",
		},
		{
			name: "other users are not restricted",
			a: attrs(mutate(func(s *stargate.Server) { s.Status.Phase = stargate.ServerFailed }),
				server("w1", "w2"), admission.Update, "servers", "status", admin),
		},
		{
			name: "other service accounts with a node name are not restricted",
			a: attrs(server("w9", "w9"), server("w9", "w9"), admission.Update, "servers", "", &user.DefaultInfo{
				Name:  "system:serviceaccount:stargate-system:stargate-controller",
				Extra: map[string][]string{serviceaccount.NodeNameKey: {"w1"}},
			}),
		},
	}
	p := New([]string{agentSA})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Validate(context.Background(), tt.a, nil)
			if tt.wantDeny == "" {
				if err != nil {
					t.Fatalf("want allowed, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want forbidden (%q), got allowed", tt.wantDeny)
			}
			if !apierrors.IsForbidden(err) {
				t.Errorf("want a Forbidden error, got %T %v", err, err)
			}
			if !strings.Contains(err.Error(), tt.wantDeny) {
				t.Errorf("message %q does not say %q", err.Error(), tt.wantDeny)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		sa    string
		valid bool
	}{
		{DefaultServiceAccount, true},
		{"kube-system:agent", true},
		{"agent", false},
		{"a:b:c", false},
		{"Bad_NS:agent", false},
	} {
		errs := (&Options{ServiceAccounts: []string{tt.sa}}).Validate()
		if (len(errs) == 0) != tt.valid {
			t.Errorf("%q: valid=%v, errors %v", tt.sa, tt.valid, errs)
		}
	}
}
