package operations

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/sshexec"
)

// Steps of a reboot, besides StepResolve, StepConnect, StepDrain and
// StepWaitForNode.
const (
	StepReboot   = "RebootHost"
	StepUncordon = "UncordonNode"
)

// RebootSteps lists the steps of a reboot in the order they run.
var RebootSteps = []string{StepResolve, StepConnect, StepDrain, StepReboot, StepWaitForNode, StepUncordon}

// DefaultRebootCommand is --reboot-command's default.
const DefaultRebootCommand = "sudo -n systemctl reboot"

// rebootHost starts --reboot-command on the host, detached, a second
// after the SSH session ends, so the session ends cleanly and the result
// is recorded before the host goes down. A resumed step does not reboot
// again when the Node already went through a restart since the step
// started (waitForReboot sees to that); it starts the command again
// otherwise, which a host that is already rebooting ignores.
func (p *repave) rebootHost(ctx context.Context) (string, error) {
	node, err := p.ownNode(ctx)
	if err != nil {
		return "", err
	}
	if node == nil {
		return "", fail(stargate.ReasonNodeNotReady, "Server %s has no Node %s to reboot; repave it first", p.server.Name, p.nodeName())
	}
	if p.resumedSteps[StepReboot] && p.restartedSince(node, p.findStep(StepReboot).StartTime.Time) {
		return fmt.Sprintf("the host was rebooted (Node %s restarted since the step started)", node.Name), nil
	}
	c, err := p.dial(ctx)
	if err != nil {
		return "", err
	}
	cmd := "setsid sh -c " + sshexec.Quote("sleep 1; "+p.r.Opts.RebootCommand) + " </dev/null >/dev/null 2>&1 &"
	cctx, cancel := context.WithTimeout(ctx, resumeCheckTimeout)
	defer cancel()
	if out, err := c.Output(cctx, cmd); err != nil {
		return "", fail(stargate.ReasonRebootFailed, "start the reboot (--reboot-command %q) on %s: %v %s", p.r.Opts.RebootCommand, p.server.Spec.IPAddress, err, strings.TrimSpace(string(out)))
	}
	// The host is going down: the connection is of no more use.
	_ = c.Close()
	p.ssh = nil
	return fmt.Sprintf("started %q on the host", p.r.Opts.RebootCommand), nil
}

// restartedSince says whether node's kubelet came back since t: its Ready
// condition changed after t (it went NotReady and Ready again, or the
// kubelet started anew), or it reports another boot ID than at t.
func (p *repave) restartedSince(node *corev1.Node, t time.Time) bool {
	c := nodeReady(node)
	if c == nil || c.Status != corev1.ConditionTrue {
		return false
	}
	// The condition's time has whole seconds: a transition in the step's
	// own second (the Node became Ready just before the reboot) is not a
	// restart. The reboot command starts a second after the step, so a
	// real restart is stamped with a later second.
	if c.LastTransitionTime.Time.After(t) {
		return true
	}
	s := p.findStep(StepDrain)
	return s.Message != "" && node.Status.NodeInfo.BootID != "" && !strings.Contains(s.Message, "boot "+node.Status.NodeInfo.BootID)
}

// waitForReboot waits, bounded by --node-ready-timeout, for the Node to
// come back after the reboot: Ready again with a Ready condition that
// changed after the reboot started (or a new boot ID).
func (p *repave) waitForReboot(ctx context.Context) (string, error) {
	start := time.Now()
	defer func() { p.nodeWait = time.Since(start) }()
	rebooted := p.findStep(StepReboot).StartTime.Time
	deadline := time.NewTimer(time.Until(p.stepDeadline(StepWaitForNode, p.r.Opts.NodeReadyTimeout)))
	defer deadline.Stop()
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	name := p.nodeName()
	sawDown := false
	for {
		changed, done := p.r.nodes.wait(name)
		var node corev1.Node
		err := p.r.APIReader.Get(ctx, types.NamespacedName{Name: name}, &node)
		switch {
		case apierrors.IsNotFound(err):
			done()
			return "", fail(stargate.ReasonNodeNotReady, "Node %s was deleted while its host rebooted", name)
		case err != nil:
			done()
			return "", err
		}
		if c := nodeReady(&node); c == nil || c.Status != corev1.ConditionTrue {
			sawDown = true
		} else if sawDown || p.restartedSince(&node, rebooted) {
			done()
			return fmt.Sprintf("Node %s went down and is Ready again after %s", name, time.Since(rebooted).Round(time.Second)), nil
		}
		select {
		case <-ctx.Done():
			done()
			return "", ctx.Err()
		case <-deadline.C:
			done()
			state := "stayed Ready without restarting: the reboot did not happen (check --reboot-command and the admin user's rights)"
			if sawDown {
				state = "went down and did not become Ready again; check the kubelet on the server (journalctl -u kubelet)"
			}
			return "", fail(stargate.ReasonNodeNotReady, "Node %s %s within %s (--node-ready-timeout) of the reboot", name, state, p.r.Opts.NodeReadyTimeout)
		case <-changed:
		case <-poll.C:
		}
		done()
	}
}

// uncordon makes the rebooted Node schedulable again.
func (p *repave) uncordon(ctx context.Context) (string, error) {
	node, err := p.ownNode(ctx)
	if err != nil {
		return "", err
	}
	if node == nil {
		return "", fail(stargate.ReasonNodeNotReady, "Node %s is gone", p.nodeName())
	}
	if err := p.cordon(ctx, node, false); err != nil {
		return "", err
	}
	return fmt.Sprintf("uncordoned Node %s", node.Name), nil
}
