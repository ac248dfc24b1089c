package operations

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/bootstrap"
)

// stepName. It deletes the bootstrap token and updates the Server.
func (p *repave) finish(ctx context.Context, stepName string, err error) error {
	began := time.Now()
	defer func() { p.finishTime = time.Since(began) }()
	now := metav1.Now()
	p.op.Status.CompletionTime = &now
	cond := metav1.Condition{Type: stargate.ConditionSucceeded, ObservedGeneration: p.op.Generation}
	if err == nil {
		p.op.Status.Phase = v1.OperationSucceeded
		p.op.Status.Message = fmt.Sprintf("server %s is Node %s, Ready", p.server.Name, p.nodeName())
		if p.kind() == v1.OperationDecommission {
			p.op.Status.Message = fmt.Sprintf("server %s decommissioned: %s; Node %s deleted", p.server.Name, p.findStep(StepReset).Message, p.nodeName())
		}
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, stargate.ReasonSucceeded, p.op.Status.Message
	} else {
		reason := stargate.ReasonInternal
		var f *failure
		if errors.As(err, &f) {
			reason = f.reason
		}
		msg := p.redact.String(err.Error())
		if stepName != "" {
			s := p.findStep(stepName)
			s.State, s.CompletionTime, s.Message = v1.StepFailed, &now, msg
			if s.StartTime == nil {
				s.StartTime = &now
			}
			msg = stepName + " failed: " + msg
		}
		p.op.Status.Phase = v1.OperationFailed
		p.op.Status.Message = msg
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reason, msg
	}
	meta.SetStatusCondition(&p.op.Status.Conditions, cond)
	// The token goes and the Server gets the result at the same time, both
	// before the Operation ends: who sees it ended sees the Server's
	// status too, and a token that cannot be deleted keeps the Operation
	// active, so it is not forgotten.
	var serverErr error
	var wg sync.WaitGroup
	// A reboot leaves the Server's status to the node health controller,
	// which follows its Node; a decommission says the Server has no Node.
	if p.server != nil && p.claimed && p.kind() != v1.OperationReboot {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serverErr = p.setServerResult(ctx, cond)
		}()
	}
	tokenErr := p.deleteTokens(ctx)
	wg.Wait()
	if serverErr != nil {
		p.log.Error(serverErr, "update Server status")
	}
	if tokenErr != nil {
		return tokenErr
	}
	if err := p.updateStatus(ctx); err != nil {
		return err
	}
	action := string(p.kind())
	if err == nil {
		p.r.Recorder.Eventf(p.op, nil, corev1.EventTypeNormal, "Succeeded", action, "%s", cond.Message)
		if p.server != nil && p.claimed {
			done := map[v1.OperationType]string{v1.OperationReboot: "Rebooted", v1.OperationDecommission: stargate.ReasonDecommissioned}[p.kind()]
			if done == "" {
				done = "Repaved"
			}
			p.r.Recorder.Eventf(p.server, p.op, corev1.EventTypeNormal, done, action, "Operation %s: %s", p.op.Name, cond.Message)
		}
		p.log.Info(strings.ToLower(action) + " succeeded")
	} else {
		p.r.Recorder.Eventf(p.op, nil, corev1.EventTypeWarning, cond.Reason, action, "%s", cond.Message)
		if p.server != nil && p.claimed {
			p.r.Recorder.Eventf(p.server, p.op, corev1.EventTypeWarning, action+"Failed", action, "Operation %s: %s", p.op.Name, cond.Message)
		}
		p.log.Info(strings.ToLower(action)+" failed", "reason", cond.Reason, "message", cond.Message)
	}
	return nil
}

func (p *repave) deleteTokens(ctx context.Context) error {
	switch {
	case p.tokenOnly:
		// Made by this run, which would have found any earlier one.
		if err := p.r.Client.Delete(ctx, p.token); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete bootstrap token Secret %s: %w", p.token.Name, err)
		}
		return nil
	case p.stepState(StepToken) == v1.StepPending:
		// The step never started: no run made a token.
		return nil
	}
	var list corev1.SecretList
	if err := p.r.APIReader.List(ctx, &list, client.InNamespace(bootstrap.TokenNamespace),
		client.MatchingLabels{bootstrap.LabelOperation: string(p.op.UID)}); err != nil {
		return fmt.Errorf("list bootstrap tokens: %w", err)
	}
	for i := range list.Items {
		if err := p.r.Client.Delete(ctx, &list.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete bootstrap token Secret %s: %w", list.Items[i].Name, err)
		}
	}
	return nil
}

// updateServer changes the Server's status and returns it as written (nil
// when the Server was replaced or mutate said there is nothing to write).
// The first try starts from base when given
// (a copy read or written a moment ago), the others from a fresh read. It
// leaves p.server as it is: steps read it while this runs in the
// background.
func (p *repave) updateServer(ctx context.Context, base *v1.Server, mutate func(s *v1.Server) bool) (*v1.Server, error) {
	key, uid := client.ObjectKeyFromObject(p.server), p.server.UID
	var written *v1.Server
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := &v1.Server{}
		if base != nil {
			base.DeepCopyInto(s)
			base = nil
		} else if err := p.r.APIReader.Get(ctx, key, s); err != nil {
			return err
		}
		if s.UID != uid {
			return nil
		}
		if !mutate(s) {
			return nil
		}
		if err := p.r.Client.Status().Update(ctx, s); err != nil {
			return err
		}
		written = s
		return nil
	})
	return written, err
}

// waitServer waits for the Server's Provisioning status to be written.
func (p *repave) waitServer() {
	if p.serverDone != nil {
		<-p.serverDone
	}
}

func (p *repave) setServerProvisioning(ctx context.Context) error {
	var err error
	p.serverWritten, err = p.updateServer(ctx, p.server, func(s *v1.Server) bool {
		if s.Status.LastOperation != p.opName {
			return false // a newer Operation holds the claim now
		}
		s.Status.Phase = v1.ServerProvisioning
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stargate.ConditionProvisioned, Status: metav1.ConditionFalse,
			Reason: stargate.ReasonProvisioning, Message: "Operation " + p.opName + " is repaving the server", ObservedGeneration: s.Generation})
		v1.SetReadySummary(s)
		return true
	})
	return err
}

// setServerResult writes the result into the Server's status, starting
// from the Server as the Provisioning write left it (a conflict, e.g. with
// the node health or routes controllers, reads it again).
func (p *repave) setServerResult(ctx context.Context, opCond metav1.Condition) error {
	p.waitServer()
	_, err := p.updateServer(ctx, p.serverWritten, func(s *v1.Server) bool {
		if s.Status.LastOperation != p.opName {
			return false // a newer Operation holds the claim now
		}
		s.Status.ObservedGeneration = s.Generation
		if p.kind() == v1.OperationDecommission {
			if opCond.Status != metav1.ConditionTrue {
				// The host and its Node may be half done: the event and
				// the Operation say what failed.
				return false
			}
			s.Status.Phase = v1.ServerPending
			s.Status.NodeName = ""
			meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stargate.ConditionProvisioned, Status: metav1.ConditionFalse,
				Reason: stargate.ReasonDecommissioned, Message: "decommissioned by Operation " + p.opName + ": its Node was deleted; repave it to use it again", ObservedGeneration: s.Generation})
			meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stargate.ConditionNodeReady, Status: metav1.ConditionFalse,
				Reason: stargate.ReasonDecommissioned, Message: "the server has no Node", ObservedGeneration: s.Generation})
			v1.SetReadySummary(s)
			return true
		}
		if opCond.Status == metav1.ConditionTrue {
			s.Status.Phase = v1.ServerReady
			s.Status.NodeName = p.nodeName()
			meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stargate.ConditionProvisioned, Status: metav1.ConditionTrue,
				Reason: stargate.ReasonSucceeded, Message: "repaved by Operation " + p.opName, ObservedGeneration: s.Generation})
			meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stargate.ConditionNodeReady, Status: metav1.ConditionTrue,
				Reason: stargate.ReasonNodeReady, Message: "Node " + p.nodeName() + " is Ready", ObservedGeneration: s.Generation})
		} else if opCond.Reason == stargate.ReasonDrainBlocked && s.Status.NodeName != "" {
			// The drain failed before anything changed on the host: the
			// Server is as it was, its Node uncordoned again.
			s.Status.Phase = v1.ServerReady
			meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stargate.ConditionProvisioned, Status: metav1.ConditionTrue,
				Reason: stargate.ReasonDrainBlocked, Message: "Operation " + p.opName + " did not repave the server: " + opCond.Message, ObservedGeneration: s.Generation})
		} else {
			s.Status.Phase = v1.ServerFailed
			meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stargate.ConditionProvisioned, Status: metav1.ConditionFalse,
				Reason: opCond.Reason, Message: "Operation " + p.opName + ": " + opCond.Message, ObservedGeneration: s.Generation})
		}
		v1.SetReadySummary(s)
		return true
	})
	return err
}

// abandonTimeout bounds what a run does after its Operation was deleted.
const abandonTimeout = time.Minute

// abandon ends the run of a deleted Operation: it stops the script on the
// host when the script step started, deletes the bootstrap token and, when
// the Server's claim still names the Operation, says in the Server's
// status that the repave was abandoned. There is no Operation left to
// write. It runs on a context of its own, since the run's was cancelled.
func (p *repave) abandon(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	p.log.Info("the Operation was deleted while it ran; stopping what it started")
	what := "nothing had run on the host"
	var errs []error
	if p.server != nil && p.profile != nil && p.stepState(StepScript) != v1.StepPending {
		// The connection of the run may be the one that was cut.
		if p.ssh != nil {
			_ = p.ssh.Close()
			p.ssh = nil
		}
		if err := p.stopScript(ctx, "because Operation "+p.opName+" was deleted"); err != nil {
			errs = append(errs, fmt.Errorf("stop the bootstrap script on the host: %w", err))
			what = "stopping its bootstrap script on the host failed (the next repave stops it before it starts)"
		} else {
			what = "its bootstrap script was stopped on the host"
		}
	}
	if err := p.deleteTokens(ctx); err != nil {
		errs = append(errs, err)
	}
	if p.server != nil && p.claimed {
		msg := fmt.Sprintf("Operation %s was deleted while it ran; %s", p.opName, what)
		if err := p.setServerResult(ctx, metav1.Condition{Type: stargate.ConditionSucceeded, Status: metav1.ConditionFalse,
			Reason: stargate.ReasonOperationDeleted, Message: msg}); err != nil {
			errs = append(errs, fmt.Errorf("update Server status: %w", err))
		}
		p.r.Recorder.Eventf(p.server, nil, corev1.EventTypeWarning, stargate.ReasonOperationDeleted, "Repave", "%s", msg)
	}
	if err := errors.Join(errs...); err != nil {
		// Nothing requeues a deleted Operation: say what was left.
		p.log.Error(err, "clean up after the deleted Operation")
	}
	return nil
}
