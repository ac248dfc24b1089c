// Package agentrestriction is the NodeAgentRestriction admission plugin of
// stargate-apiserver. Like Kubernetes' NodeRestriction, it limits what a
// node-local agent may write: a request from the stargate-nodeagent
// ServiceAccount must carry the name of its node in the bound token's extra
// (authentication.kubernetes.io/node-name), and may then only update the
// status of the Server registered as that node, and there only the node
// agent's own conditions and the node layer of status.routes.
package agentrestriction

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// PluginName is the name under which the plugin is registered.
const PluginName = "NodeAgentRestriction"

// DefaultServiceAccount is the ServiceAccount of the stargate-nodeagent
// DaemonSet in artifacts/nodeagent, as namespace:name.
const DefaultServiceAccount = "stargate-nodeagent:stargate-nodeagent"

// AgentConditions are the condition types a node agent reports.
var AgentConditions = []string{stargate.ConditionNodeRoutesHealthy, stargate.ConditionCiliumPodCIDRMatches}

// Options name the identities the plugin restricts.
type Options struct {
	// ServiceAccounts are the node agents' ServiceAccounts, as namespace:name.
	ServiceAccounts []string
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{ServiceAccounts: []string{DefaultServiceAccount}}
}

// Validate checks that every entry is namespace:name.
func (o *Options) Validate() []error {
	var errs []error
	for _, sa := range o.ServiceAccounts {
		if _, _, err := serviceaccount.SplitUsername(serviceaccount.ServiceAccountUsernamePrefix + sa); err != nil {
			errs = append(errs, fmt.Errorf("--node-agent-service-accounts: %q is not namespace:name", sa))
		}
	}
	return errs
}

// Register adds the plugin to plugins. The plugin reads opts when the
// admission chain is built, that is after flags are parsed.
func Register(plugins *admission.Plugins, opts *Options) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) {
		if errs := opts.Validate(); len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return New(opts.ServiceAccounts), nil
	})
}

// Plugin restricts the writes of node agents.
type Plugin struct {
	*admission.Handler
	usernames sets.Set[string]
}

var _ admission.ValidationInterface = &Plugin{}

// New returns a plugin restricting the given ServiceAccounts (namespace:name).
func New(serviceAccounts []string) *Plugin {
	p := &Plugin{
		Handler:   admission.NewHandler(admission.Create, admission.Update, admission.Delete, admission.Connect),
		usernames: sets.New[string](),
	}
	for _, sa := range serviceAccounts {
		p.usernames.Insert(serviceaccount.ServiceAccountUsernamePrefix + sa)
	}
	return p
}

var serversResource = stargate.Resource("servers")

// Validate lets a node agent update only the status of its own Server, and
// there only its own conditions and the node route layer. It runs after the
// status strategy, so a spec sent to servers/status is already gone.
func (p *Plugin) Validate(ctx context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	u := a.GetUserInfo()
	if u == nil || !p.usernames.Has(u.GetName()) {
		return nil
	}
	if a.GetResource().Group != stargate.GroupName {
		return nil
	}
	node, err := nodeName(u)
	if err != nil {
		return admission.NewForbidden(a, fmt.Errorf("node agent %s: %w", u.GetName(), err))
	}
	if a.GetResource().GroupResource() != serversResource || a.GetSubresource() != "status" || a.GetOperation() != admission.Update {
		return admission.NewForbidden(a, fmt.Errorf("node agent on node %q may only update servers/status of its own Server, not %s %s",
			node, strings.ToLower(string(a.GetOperation())), describe(a)))
	}
	obj, ok1 := a.GetObject().(*stargate.Server)
	old, ok2 := a.GetOldObject().(*stargate.Server)
	if !ok1 || !ok2 {
		return admission.NewForbidden(a, fmt.Errorf("node agent on node %q: unexpected objects %T, %T", node, a.GetObject(), a.GetOldObject()))
	}
	if old.Status.NodeName != node {
		owner := "no node yet (status.nodeName is empty)"
		if old.Status.NodeName != "" {
			owner = fmt.Sprintf("node %q (status.nodeName)", old.Status.NodeName)
		}
		return admission.NewForbidden(a, fmt.Errorf("node agent on node %q may only write its own Server; Server %s/%s belongs to %s",
			node, old.Namespace, old.Name, owner))
	}
	if changed := ForbiddenChanges(obj, old); len(changed) > 0 {
		return admission.NewForbidden(a, fmt.Errorf("node agent on node %q may change only conditions %s and the %q entry of status.routes; this request also changes %s",
			node, strings.Join(AgentConditions, " and "), stargate.RouteLayerNode, strings.Join(changed, ", ")))
	}
	return nil
}

// nodeName is the node a bound ServiceAccount token was issued for.
func nodeName(u user.Info) (string, error) {
	names := u.GetExtra()[serviceaccount.NodeNameKey]
	switch {
	case len(names) == 0 || names[0] == "":
		return "", fmt.Errorf("the token names no node: use a token bound to the agent's Pod (its user extra %s is missing)", serviceaccount.NodeNameKey)
	case len(names) > 1:
		return "", fmt.Errorf("the token names %d nodes in %s; expected one", len(names), serviceaccount.NodeNameKey)
	}
	return names[0], nil
}

func describe(a admission.Attributes) string {
	r := a.GetResource().Resource
	if a.GetSubresource() != "" {
		r += "/" + a.GetSubresource()
	}
	if a.GetName() != "" {
		r += " " + a.GetName()
	}
	if a.GetNamespace() != "" {
		r += " in namespace " + a.GetNamespace()
	}
	return r
}

// ForbiddenChanges lists the fields of obj that differ from old and that a
// node agent may not change, as field paths.
func ForbiddenChanges(obj, old *stargate.Server) []string {
	var changed []string
	eq := apiequality.Semantic.DeepEqual
	check := func(path string, a, b any) {
		if !eq(a, b) {
			changed = append(changed, path)
		}
	}
	check("metadata.labels", obj.Labels, old.Labels)
	check("metadata.annotations", obj.Annotations, old.Annotations)
	check("metadata.ownerReferences", obj.OwnerReferences, old.OwnerReferences)
	check("metadata.finalizers", obj.Finalizers, old.Finalizers)
	check("spec", obj.Spec, old.Spec)
	s, o := &obj.Status, &old.Status
	check("status.phase", s.Phase, o.Phase)
	check("status.nodeName", s.NodeName, o.NodeName)
	check("status.podCIDR", s.PodCIDR, o.PodCIDR)
	check("status.lastOperation", s.LastOperation, o.LastOperation)
	check("status.observedGeneration", s.ObservedGeneration, o.ObservedGeneration)

	for _, t := range unionKeys(s.Conditions, o.Conditions, func(c metav1.Condition) string { return c.Type }) {
		if slices.Contains(AgentConditions, t) {
			continue
		}
		check(fmt.Sprintf("status.conditions[type=%s]", t), findCondition(s.Conditions, t), findCondition(o.Conditions, t))
	}
	for _, l := range unionKeys(s.Routes, o.Routes, func(r stargate.RouteLayerStatus) string { return string(r.Layer) }) {
		if l == string(stargate.RouteLayerNode) {
			continue
		}
		check(fmt.Sprintf("status.routes[layer=%s]", l), findLayer(s.Routes, l), findLayer(o.Routes, l))
	}
	return changed
}

func unionKeys[T any](a, b []T, key func(T) string) []string {
	var keys []string
	for _, list := range [][]T{a, b} {
		for _, x := range list {
			if k := key(x); !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

func findCondition(cs []metav1.Condition, t string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

func findLayer(ls []stargate.RouteLayerStatus, layer string) *stargate.RouteLayerStatus {
	for i := range ls {
		if string(ls[i].Layer) == layer {
			return &ls[i]
		}
	}
	return nil
}
