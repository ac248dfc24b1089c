// Package rollout runs ServerRollouts: one Operation on each selected
// Server of a datacenter, a few at a time, the way a MachineDeployment
// rolls machines.
//
// The reconciler is level-based and keeps no state of its own. The
// Servers a rollout takes are recorded in its status when it starts; the
// Operation of each Server is found by the labels it was created with
// (LabelRolloutUID and stargate.LabelServer), which the repave subresource
// sets in the same write that creates the Operation, so a controller that
// restarts at any point finds every Operation it started and never starts
// a second one for a Server.
package rollout

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/validation"
	"github.com/stargate-k8s/stargate/pkg/cilium"
	"github.com/stargate-k8s/stargate/pkg/generated/clientset/versioned"
)

// LabelRolloutUID on an Operation names (by UID: a name may be longer
// than a label value) the ServerRollout that started it.
const LabelRolloutUID = "stargate.io/rollout-uid"

// Controller is the rollout reconciler group.
type Controller struct {
	// Resync is how often an active rollout is looked at again without an
	// event (Node readiness it samples, a busy Server).
	Resync time.Duration
}

// New returns the controller with its defaults.
func New() *Controller { return &Controller{Resync: 15 * time.Second} }

// Name implements manager.Controller.
func (c *Controller) Name() string { return "rollout" }

// AddFlags implements manager.Controller.
func (c *Controller) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&c.Resync, "rollout-resync", c.Resync, "How often an active ServerRollout is checked again without an event (Node readiness, busy Servers).")
}

// SetupWithManager implements manager.Controller.
func (c *Controller) SetupWithManager(_ context.Context, mgr ctrl.Manager) error {
	cs, err := versioned.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("stargate client: %w", err)
	}
	r := &Reconciler{
		Stargate:  cs,
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorderFor("stargate-rollout"), //nolint:staticcheck // the events/v1 recorder is not wired in the manager yet
		Resync:    c.Resync,
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("rollout").
		For(&v1.ServerRollout{}).
		Watches(&v1.Operation{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsOfOperation)).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsOfNode)).
		Complete(r)
}

// Reconciler reconciles one ServerRollout.
type Reconciler struct {
	Client client.Client
	// APIReader lists the rollout's Operations from the API server, not
	// the cache: an Operation started a moment ago must be seen, or its
	// Server would look as if it still waited.
	APIReader client.Reader
	Recorder  record.EventRecorder
	Resync    time.Duration
	// Stargate calls the Server subresources that start Operations.
	Stargate versioned.Interface
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (r *Reconciler) now() metav1.Time {
	if r.Now != nil {
		return metav1.NewTime(r.Now())
	}
	return metav1.Now()
}

// rolloutsOfOperation maps an Operation a rollout started to the active
// rollouts of its namespace with that UID.
func (r *Reconciler) rolloutsOfOperation(ctx context.Context, obj client.Object) []reconcile.Request {
	uid := obj.GetLabels()[LabelRolloutUID]
	if uid == "" {
		return nil
	}
	return r.activeRollouts(ctx, obj.GetNamespace(), func(ro *v1.ServerRollout) bool { return string(ro.UID) == uid })
}

// rolloutsOfNode maps a Stargate Node to the active rollouts of its
// datacenter: its readiness counts towards their unavailable Servers.
func (r *Reconciler) rolloutsOfNode(ctx context.Context, obj client.Object) []reconcile.Request {
	dc := obj.GetLabels()[stargate.LabelDatacenter]
	if dc == "" || obj.GetLabels()[stargate.LabelServer] == "" {
		return nil
	}
	return r.activeRollouts(ctx, dc, nil)
}

func (r *Reconciler) activeRollouts(ctx context.Context, namespace string, keep func(*v1.ServerRollout) bool) []reconcile.Request {
	var list v1.ServerRolloutList
	if err := r.Client.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		ro := &list.Items[i]
		if finished(ro) || (keep != nil && !keep(ro)) {
			continue
		}
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}})
	}
	return reqs
}

// finished says the rollout has nothing left to do: it completed, or it
// stopped and its last Operations are done.
func finished(ro *v1.ServerRollout) bool {
	return ro.Status.CompletionTime != nil
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ro v1.ServerRollout
	if err := r.Client.Get(ctx, req.NamespacedName, &ro); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ro.DeletionTimestamp.IsZero() || finished(&ro) {
		return ctrl.Result{}, nil
	}
	next := ro.DeepCopy()
	next.Status.ObservedGeneration = ro.Generation
	if next.Status.StartTime == nil {
		if done, err := r.start(ctx, next); err != nil || done {
			return ctrl.Result{}, r.writeStatus(ctx, &ro, next, err)
		}
		// The chosen Servers are recorded before any Operation starts, so
		// a restart takes the same ones.
		return ctrl.Result{Requeue: true}, r.writeStatus(ctx, &ro, next, nil)
	}

	p, err := r.observe(ctx, next)
	if err != nil {
		return ctrl.Result{}, err
	}
	startErr := r.startOperations(ctx, next, p)
	r.summarize(next, p)
	if err := r.writeStatus(ctx, &ro, next, startErr); err != nil {
		return ctrl.Result{}, err
	}
	if finished(next) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: r.Resync}, startErr
}

// start chooses the Servers: those the selector picks in the rollout's
// namespace and not being deleted, by name. done is true when the rollout
// is over before it began (no Server, or too many).
func (r *Reconciler) start(ctx context.Context, ro *v1.ServerRollout) (done bool, err error) {
	sel, err := metav1.LabelSelectorAsSelector(&ro.Spec.Selector)
	if err != nil {
		return false, fmt.Errorf("selector of ServerRollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	var servers v1.ServerList
	if err := r.Client.List(ctx, &servers, client.InNamespace(ro.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return false, fmt.Errorf("list Servers: %w", err)
	}
	var names []string
	for _, s := range servers.Items {
		if s.DeletionTimestamp.IsZero() {
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	now := r.now()
	ro.Status.StartTime = &now
	ro.Status.Total = int32(len(names))
	switch {
	case len(names) == 0:
		r.finish(ro, stargate.ConditionRolloutComplete, stargate.ReasonNoServers,
			fmt.Sprintf("no Server in namespace %s matches selector %s; nothing to do", ro.Namespace, selectorString(sel)))
		return true, nil
	case len(names) > validation.MaxRolloutServers:
		r.finish(ro, stargate.ConditionRolloutFailed, stargate.ReasonTooManyServers,
			fmt.Sprintf("selector %s matches %d Servers, more than the %d one rollout may take; split it with narrower selectors",
				selectorString(sel), len(names), validation.MaxRolloutServers))
		return true, nil
	}
	for _, n := range names {
		ro.Status.Servers = append(ro.Status.Servers, v1.ServerRolloutServer{Name: n, State: v1.RolloutServerWaiting})
	}
	meta.SetStatusCondition(&ro.Status.Conditions, metav1.Condition{Type: stargate.ConditionRolloutProgressing,
		Status: metav1.ConditionTrue, Reason: stargate.ReasonRolloutStarted, ObservedGeneration: ro.Generation,
		Message: fmt.Sprintf("%s of %d Servers (selector %s), at most %s unavailable", ro.Spec.Operation, len(names), selectorString(sel), ro.Spec.MaxUnavailable)})
	r.event(ro, corev1.EventTypeNormal, stargate.ReasonRolloutStarted, "%s of %d Servers started: %s", ro.Spec.Operation, len(names), strings.Join(names, ", "))
	return false, nil
}

func selectorString(sel labels.Selector) string {
	if sel.Empty() {
		return "<all>"
	}
	return sel.String()
}

// picture is what the rollout's Servers look like now.
type picture struct {
	// unavailable are the selected Servers with an Operation running or a
	// Node that is not Ready.
	unavailable map[string]bool
}

// observe updates each Server's state from its Operation and counts the
// unavailable Servers.
func (r *Reconciler) observe(ctx context.Context, ro *v1.ServerRollout) (picture, error) {
	p := picture{unavailable: map[string]bool{}}
	var ops v1.OperationList
	if err := r.APIReader.List(ctx, &ops, client.InNamespace(ro.Namespace), client.MatchingLabels{LabelRolloutUID: string(ro.UID)}); err != nil {
		return p, fmt.Errorf("list Operations of ServerRollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	byServer := map[string]*v1.Operation{}
	for i := range ops.Items {
		op := &ops.Items[i]
		byServer[op.Labels[stargate.LabelServer]] = op
	}
	for i := range ro.Status.Servers {
		s := &ro.Status.Servers[i]
		if op := byServer[s.Name]; op != nil {
			s.Operation = op.Name
			switch op.Status.Phase {
			case v1.OperationSucceeded:
				s.State, s.Message = v1.RolloutServerSucceeded, ""
			case v1.OperationFailed:
				s.State, s.Message = v1.RolloutServerFailed, truncate(op.Status.Message)
			default:
				s.State, s.Message = v1.RolloutServerRunning, ""
				p.unavailable[s.Name] = true
			}
		} else if s.State == v1.RolloutServerRunning {
			// Its Operation was deleted before it finished.
			s.State, s.Message = v1.RolloutServerFailed, fmt.Sprintf("Operation %s was deleted before it finished", s.Operation)
		}
	}
	for i := range ro.Status.Servers {
		s := &ro.Status.Servers[i]
		if p.unavailable[s.Name] {
			continue
		}
		ready, err := r.nodeReady(ctx, ro.Namespace, s.Name)
		if err != nil {
			return p, err
		}
		if !ready {
			p.unavailable[s.Name] = true
		}
	}
	return p, nil
}

// nodeReady says whether the Server's Node (the one Stargate made for it)
// is Ready. A Server that has no such Node is not available.
func (r *Reconciler) nodeReady(ctx context.Context, namespace, name string) (bool, error) {
	var s v1.Server
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	if s.Status.NodeName == "" {
		return false, nil
	}
	var n corev1.Node
	if err := r.Client.Get(ctx, types.NamespacedName{Name: s.Status.NodeName}, &n); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	if !cilium.Owned(n.Labels, stargate.OwnerLabels(name, namespace)) {
		return false, nil
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, nil
		}
	}
	return false, nil
}

// maxUnavailable resolves spec.maxUnavailable against the number of
// selected Servers: a percentage rounds down, but never below 1.
func maxUnavailable(ro *v1.ServerRollout) int {
	v := intstr.FromInt32(v1.DefaultRolloutMaxUnavailable)
	if ro.Spec.MaxUnavailable != nil {
		v = *ro.Spec.MaxUnavailable
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(&v, int(ro.Status.Total), false)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

func maxFailures(ro *v1.ServerRollout) int {
	if ro.Spec.MaxFailures == nil {
		return 0
	}
	return int(*ro.Spec.MaxFailures)
}

// stopped says the rollout starts no more Operations: paused, or more
// Operations failed than it allows.
func stopped(ro *v1.ServerRollout) bool {
	return ro.Spec.Paused || countState(ro, v1.RolloutServerFailed) > maxFailures(ro)
}

func countState(ro *v1.ServerRollout, state v1.ServerRolloutServerState) int {
	n := 0
	for _, s := range ro.Status.Servers {
		if s.State == state {
			n++
		}
	}
	return n
}

// startOperations starts Operations on waiting Servers. At most
// maxUnavailable Operations of the rollout run at once, and a Server that
// is available is taken down only while fewer than maxUnavailable
// selected Servers are unavailable. Waiting Servers that are down already
// go first: repaving them costs no capacity. A busy Server (another
// Operation holds it) is tried again later. p counts the Servers it
// starts as unavailable.
func (r *Reconciler) startOperations(ctx context.Context, ro *v1.ServerRollout, p picture) error {
	if stopped(ro) {
		return nil
	}
	limit := maxUnavailable(ro)
	slots := limit - countState(ro, v1.RolloutServerRunning)
	budget := limit - len(p.unavailable)
	var order []int
	for i, s := range ro.Status.Servers {
		if s.State == v1.RolloutServerWaiting && p.unavailable[s.Name] {
			order = append(order, i)
		}
	}
	for i, s := range ro.Status.Servers {
		if s.State == v1.RolloutServerWaiting && !p.unavailable[s.Name] {
			order = append(order, i)
		}
	}
	var errs []string
	for _, i := range order {
		s := &ro.Status.Servers[i]
		if slots <= 0 {
			break
		}
		if !p.unavailable[s.Name] {
			if budget <= 0 {
				break
			}
			budget--
		}
		slots--
		op, err := r.startOne(ctx, ro, s.Name)
		switch {
		case err == nil:
			s.State, s.Operation, s.Message = v1.RolloutServerRunning, op.Name, ""
			p.unavailable[s.Name] = true
			r.event(ro, corev1.EventTypeNormal, "OperationStarted", "%s of Server %s started: Operation %s", ro.Spec.Operation, s.Name, op.Name)
		case apierrors.IsConflict(err):
			// Busy with another Operation: it is unavailable meanwhile
			// (counted by its Node), and is tried on a later pass.
			s.Message = truncate(err.Error())
		case apierrors.IsNotFound(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
			s.State, s.Message = v1.RolloutServerFailed, truncate("could not start: "+err.Error())
			r.event(ro, corev1.EventTypeWarning, "OperationNotStarted", "%s of Server %s could not start: %v", ro.Spec.Operation, s.Name, err)
			if stopped(ro) {
				return nil
			}
		default:
			errs = append(errs, fmt.Sprintf("Server %s: %v", s.Name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("start Operations of ServerRollout %s/%s: %s", ro.Namespace, ro.Name, strings.Join(errs, "; "))
	}
	return nil
}

// startOne asks the Server's subresource for the Operation, labelled as
// this rollout's; the registry takes the Server's claim in that call.
func (r *Reconciler) startOne(ctx context.Context, ro *v1.ServerRollout, server string) (*v1.Operation, error) {
	req := &v1.RepaveRequest{
		ObjectMeta:             metav1.ObjectMeta{Labels: map[string]string{LabelRolloutUID: string(ro.UID)}},
		ProvisioningProfileRef: ro.Spec.ProvisioningProfileRef,
		Reason:                 rolloutReason(ro),
	}
	servers := r.Stargate.StargateV1alpha1().Servers(ro.Namespace)
	opts := metav1.CreateOptions{FieldManager: "stargate-rollout"}
	switch ro.Spec.Operation {
	case v1.OperationRepave:
		return servers.Repave(ctx, server, req, opts)
	case v1.OperationReboot:
		return servers.Reboot(ctx, server, &v1.RebootRequest{ObjectMeta: req.ObjectMeta, Reason: req.Reason}, opts)
	default:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("a ServerRollout cannot run %s Operations", ro.Spec.Operation))
	}
}

func rolloutReason(ro *v1.ServerRollout) string {
	s := fmt.Sprintf("ServerRollout %s", ro.Name)
	if ro.Spec.Reason != "" {
		s += ": " + ro.Spec.Reason
	}
	if len(s) > validation.MaxReasonLength {
		s = s[:validation.MaxReasonLength]
	}
	return s
}

// summarize sets the counters and conditions from the Servers' states.
func (r *Reconciler) summarize(ro *v1.ServerRollout, p picture) {
	st := &ro.Status
	st.Succeeded = int32(countState(ro, v1.RolloutServerSucceeded))
	st.Failed = int32(countState(ro, v1.RolloutServerFailed))
	st.Running = int32(countState(ro, v1.RolloutServerRunning))
	st.Unavailable = int32(len(p.unavailable))
	waiting := countState(ro, v1.RolloutServerWaiting)

	if int(st.Failed) > maxFailures(ro) {
		if !meta.IsStatusConditionTrue(st.Conditions, stargate.ConditionRolloutFailed) {
			msg := fmt.Sprintf("stopped: %d Operations failed, more than maxFailures %d (%s); %d succeeded, %d still running, %d not started",
				st.Failed, maxFailures(ro), failedList(ro), st.Succeeded, st.Running, waiting)
			meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: stargate.ConditionRolloutFailed,
				Status: metav1.ConditionTrue, Reason: stargate.ReasonTooManyFailures, ObservedGeneration: ro.Generation, Message: msg})
			r.event(ro, corev1.EventTypeWarning, stargate.ReasonTooManyFailures, "%s", msg)
		}
		if st.Running == 0 {
			r.finish(ro, stargate.ConditionRolloutFailed, stargate.ReasonTooManyFailures, "")
		}
		return
	}
	if waiting == 0 && st.Running == 0 {
		msg := fmt.Sprintf("%d of %d Servers succeeded", st.Succeeded, st.Total)
		if st.Failed > 0 {
			msg += fmt.Sprintf("; %d failed, within maxFailures %d (%s)", st.Failed, maxFailures(ro), failedList(ro))
		}
		r.finish(ro, stargate.ConditionRolloutComplete, stargate.ReasonAllSucceeded, msg)
		return
	}
	cond := metav1.Condition{Type: stargate.ConditionRolloutProgressing, Status: metav1.ConditionTrue, ObservedGeneration: ro.Generation,
		Reason:  stargate.ReasonRolloutStarted,
		Message: fmt.Sprintf("%d of %d succeeded, %d running, %d waiting; %d unavailable of at most %d", st.Succeeded, st.Total, st.Running, waiting, st.Unavailable, maxUnavailable(ro))}
	switch {
	case ro.Spec.Paused:
		cond.Reason = stargate.ReasonRolloutPaused
		cond.Message = "paused: no new Operation starts; " + cond.Message
	case waiting > 0 && int(st.Unavailable) >= maxUnavailable(ro):
		cond.Reason = stargate.ReasonWaitingForCapacity
	}
	meta.SetStatusCondition(&st.Conditions, cond)
}

func failedList(ro *v1.ServerRollout) string {
	var l []string
	for _, s := range ro.Status.Servers {
		if s.State == v1.RolloutServerFailed {
			if s.Operation != "" {
				l = append(l, fmt.Sprintf("%s: Operation %s", s.Name, s.Operation))
			} else {
				l = append(l, s.Name)
			}
		}
	}
	return strings.Join(l, ", ")
}

// finish ends the rollout: condition t True (with reason and message when
// message is not empty), Progressing False, completionTime set.
func (r *Reconciler) finish(ro *v1.ServerRollout, t, reason, message string) {
	st := &ro.Status
	if message != "" {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: metav1.ConditionTrue,
			Reason: reason, ObservedGeneration: ro.Generation, Message: message})
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: stargate.ConditionRolloutProgressing, Status: metav1.ConditionFalse,
		Reason: stargate.ReasonRolloutFinished, ObservedGeneration: ro.Generation, Message: "the rollout has finished; see the " + t + " condition"})
	now := r.now()
	st.CompletionTime = &now
	eventType := corev1.EventTypeNormal
	if t == stargate.ConditionRolloutFailed {
		eventType = corev1.EventTypeWarning
	}
	if c := meta.FindStatusCondition(st.Conditions, t); c != nil {
		r.event(ro, eventType, c.Reason, "%s", c.Message)
	}
}

// writeStatus writes next's status if it changed; a conflict comes back
// as a requeue through the error.
func (r *Reconciler) writeStatus(ctx context.Context, old, next *v1.ServerRollout, cause error) error {
	if equality.Semantic.DeepEqual(old.Status, next.Status) {
		return cause
	}
	if err := r.Client.Status().Update(ctx, next); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("update status of ServerRollout %s/%s: %w", next.Namespace, next.Name, err)
	}
	return cause
}

func (r *Reconciler) event(ro *v1.ServerRollout, eventType, reason, format string, args ...interface{}) {
	if r.Recorder != nil {
		r.Recorder.Eventf(ro, eventType, reason, format, args...)
	}
}

func truncate(s string) string {
	if len(s) > 1024 {
		return s[:1024] + "..."
	}
	return s
}

// Validate implements manager.Validator.
func (c *Controller) Validate() error {
	if c.Resync <= 0 {
		return fmt.Errorf("--rollout-resync must be positive, got %s", c.Resync)
	}
	return nil
}
