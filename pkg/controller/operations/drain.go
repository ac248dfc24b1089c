package operations

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// StepDrain cordons the Server's Node and evicts its pods before a
// repave, reboot or decommission touches the host.
const StepDrain = "DrainNode"

// Reasons of the drain.
const ()

// DefaultDrainTimeout bounds a drain when neither the Operation nor the
// profile names one.
const DefaultDrainTimeout = 5 * time.Minute

// Annotation of a mirror pod (a static pod's reflection in the API), which
// a drain leaves alone as kubectl drain does: deleting it does nothing.
const mirrorPodAnnotation = corev1.MirrorPodAnnotationKey

// evictionRetry is how long a drain waits between rounds of evictions.
var evictionRetry = time.Second

// drainTimeout is the Operation's spec.drainTimeout, else the profile's,
// else DefaultDrainTimeout.
func (p *repave) drainTimeout() time.Duration {
	if d := p.op.Spec.DrainTimeout; d != nil && d.Duration > 0 {
		return d.Duration
	}
	if p.profile != nil {
		if d := p.profile.Spec.DrainTimeout; d != nil && d.Duration > 0 {
			return d.Duration
		}
	}
	return DefaultDrainTimeout
}

// drainNode cordons the Server's Node and evicts its pods through the
// Eviction API, the way kubectl drain does: PodDisruptionBudgets are
// respected (an eviction they refuse, 429, is tried again until the
// timeout), DaemonSet pods and mirror pods stay. After the timeout, pods
// still there are deleted when the Operation asked for force; otherwise
// the Operation fails naming them and what refused their eviction, and the
// Node is uncordoned (nothing was done to the host). A Server without a
// Node (its first provisioning) has nothing to drain; a Node Stargate did
// not make for this Server is never touched (ownNode refuses it).
func (p *repave) drainNode(ctx context.Context) (string, error) {
	node, err := p.ownNode(ctx)
	if err != nil {
		return "", err
	}
	if node == nil {
		return fmt.Sprintf("no Node %s to drain", p.nodeName()), nil
	}
	if err := p.cordon(ctx, node, true); err != nil {
		return "", err
	}
	timeout := p.drainTimeout()
	deadline := p.stepDeadline(StepDrain, timeout)
	var evicted []string
	seen := map[types.UID]bool{}
	for {
		pods, err := p.drainablePods(ctx, node.Name)
		if err != nil {
			return "", err
		}
		if len(pods) == 0 {
			msg := fmt.Sprintf("cordoned Node %s%s and evicted %d pods", node.Name, bootNote(node), len(evicted))
			if len(evicted) > 0 {
				msg += ": " + strings.Join(evicted, ", ")
			}
			return msg, nil
		}
		// Why each pod still there was not evicted this round.
		blocked := map[string]string{}
		for i := range pods {
			pod := &pods[i]
			if pod.DeletionTimestamp != nil {
				// Evicted (or deleted): its kubelet is stopping it.
				continue
			}
			ref := pod.Namespace + "/" + pod.Name
			err := p.r.Client.SubResource("eviction").Create(ctx, pod, &policyv1.Eviction{
				ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
			})
			switch {
			case err == nil || apierrors.IsNotFound(err):
				if !seen[pod.UID] {
					seen[pod.UID] = true
					evicted = append(evicted, ref)
					p.log.Info("evicted pod", "pod", ref, "node", node.Name)
				}
			case apierrors.IsTooManyRequests(err):
				blocked[ref] = evictionRefusal(err)
			case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
				return "", fail(stargate.ReasonDrainBlocked, "evict pod %s from Node %s: %v", ref, node.Name, err)
			default:
				blocked[ref] = err.Error()
			}
		}
		if time.Now().After(deadline) {
			return p.drainTimedOut(ctx, node, pods, blocked, evicted, timeout)
		}
		// Evicted pods are waited for more often than refused evictions
		// are tried again.
		wait := evictionRetry
		if len(blocked) == 0 {
			wait = evictionRetry / 5
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(wait):
		}
	}
}

// drainTimedOut ends a drain whose timeout passed with pods still on the
// Node: it deletes them with force, else fails the Operation.
func (p *repave) drainTimedOut(ctx context.Context, node *corev1.Node, pods []corev1.Pod, blocked map[string]string, evicted []string, timeout time.Duration) (string, error) {
	var left []string
	for _, pod := range pods {
		ref := pod.Namespace + "/" + pod.Name
		why := blocked[ref]
		if why == "" {
			why = "evicted, still terminating"
		}
		left = append(left, ref+" ("+why+")")
	}
	slices.Sort(left)
	if !p.op.Spec.Force {
		uncordoned := "the Node was uncordoned"
		if err := p.cordon(ctx, node, false); err != nil {
			uncordoned = "uncordoning the Node failed: " + err.Error()
		}
		return "", fail(stargate.ReasonDrainBlocked, "Node %s was not drained within %s (spec.drainTimeout, else the profile's, else %s): %d pods left: %s; nothing was done to the host and %s. Let the PodDisruptionBudget allow it, or ask again with force to delete such pods after the timeout",
			node.Name, timeout, DefaultDrainTimeout, len(left), strings.Join(left, "; "), uncordoned)
	}
	for i := range pods {
		pod := &pods[i]
		if err := p.r.Client.Delete(ctx, pod, client.Preconditions{UID: &pod.UID}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return "", fmt.Errorf("delete pod %s/%s from Node %s (force): %w", pod.Namespace, pod.Name, node.Name, err)
		}
	}
	msg := fmt.Sprintf("cordoned Node %s%s, evicted %d pods; after %s deleted %d pods eviction did not remove (force): %s", node.Name, bootNote(node), len(evicted), timeout, len(left), strings.Join(left, "; "))
	p.log.Info("forced the drain", "node", node.Name, "deleted", left)
	p.r.Recorder.Eventf(p.server, p.related(), corev1.EventTypeWarning, stargate.ReasonDrainForced, "Drain",
		"Node %s: deleted %d pods a PodDisruptionBudget still protected after %s (force): %s", node.Name, len(left), timeout, strings.Join(left, "; "))
	return msg, nil
}

// evictionRefusal says why the API refused an eviction: the
// PodDisruptionBudget's own words when it was one.
func evictionRefusal(err error) string {
	var se *apierrors.StatusError
	if errors.As(err, &se) && se.ErrStatus.Details != nil {
		var causes []string
		for _, c := range se.ErrStatus.Details.Causes {
			if c.Message != "" {
				causes = append(causes, c.Message)
			}
		}
		if len(causes) > 0 {
			return strings.Join(causes, "; ")
		}
	}
	return err.Error()
}

// drainablePods lists the pods of Node name a drain removes: every pod
// bound to it except mirror pods, DaemonSet pods (their controller would
// put them back; they tolerate the cordon) and pods that have finished.
func (p *repave) drainablePods(ctx context.Context, name string) ([]corev1.Pod, error) {
	var list corev1.PodList
	// Around the cache: no informer on every pod of the cluster for this.
	if err := p.r.APIReader.List(ctx, &list, client.MatchingFields{"spec.nodeName": name}); err != nil {
		return nil, fmt.Errorf("list the pods of Node %s: %w", name, err)
	}
	var pods []corev1.Pod
	for _, pod := range list.Items {
		if _, mirror := pod.Annotations[mirrorPodAnnotation]; mirror {
			continue
		}
		if ctl := metav1.GetControllerOf(&pod); ctl != nil && ctl.Kind == "DaemonSet" {
			continue
		}
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		pods = append(pods, pod)
	}
	return pods, nil
}

// cordon marks node unschedulable (on) or schedulable again.
func (p *repave) cordon(ctx context.Context, node *corev1.Node, on bool) error {
	if node.Spec.Unschedulable == on {
		return nil
	}
	patch := fmt.Appendf(nil, `{"spec":{"unschedulable":%t}}`, on)
	if err := p.r.Client.Patch(ctx, node, client.RawPatch(types.MergePatchType, patch)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		verb := "cordon"
		if !on {
			verb = "uncordon"
		}
		return fmt.Errorf("%s Node %s: %w", verb, node.Name, err)
	}
	return nil
}

// bootNote names the Node's boot ID, recorded in the drain step so a
// reboot can tell the host booted again.
func bootNote(n *corev1.Node) string {
	if id := n.Status.NodeInfo.BootID; id != "" {
		return " (boot " + id + ")"
	}
	return ""
}
