package operations

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// Steps of a decommission, besides StepResolve and StepDrain.
const (
	StepReset      = "ResetHost"
	StepDeleteNode = "DeleteNode"
)

// DecommissionSteps lists the steps of a decommission in the order they
// run. The Node is drained even when the host cannot be reached; the
// routes and the pod CIDR of the Server are the other controllers' (their
// finalizers on the Server).
var DecommissionSteps = []string{StepResolve, StepDrain, StepReset, StepDeleteNode}

// resetHost runs the reset script (--reset-script, else
// bootstrap.ResetScript) on the host over SSH, through the jump host with
// the repave's credentials and host key checks. A host that cannot be
// reached (after --ssh-connect-attempts) or refuses the key is not reset:
// the step says what is left there, a Warning event too, and the
// decommission goes on, so the Node and routes of a dead machine go.
// A host key mismatch still fails: that is another machine.
func (p *repave) resetHost(ctx context.Context) (string, error) {
	c, err := p.dial(ctx)
	if err != nil {
		var f *failure
		if errors.As(err, &f) && (f.reason == stargate.ReasonUnreachable || f.reason == stargate.ReasonAuthenticationFailed) {
			left := fmt.Sprintf("could not reset host %s (%v): its kubelet may still run there with its configuration and client certificate (/etc/kubernetes, /var/lib/kubelet); the Node is deleted, so the certificate no longer names a Node; reset it by hand (the reset script of stargate-controller) or reinstall it", p.server.Spec.IPAddress, p.redact.String(err.Error()))
			p.r.Recorder.Eventf(p.server, p.related(), corev1.EventTypeWarning, stargate.ReasonHostNotReset, "Decommission", "%s", left)
			return left, nil
		}
		return "", err
	}
	sctx, cancel := context.WithDeadline(ctx, p.stepDeadline(StepReset, p.r.Opts.ScriptTimeout))
	defer cancel()
	tail := newTail(p.r.Opts.OutputTailBytes, p.redact)
	// stdout and stderr are copied at the same time.
	out := &lockedBuffer{}
	err = c.Run(sctx, "bash -s", bytes.NewReader(p.r.resetScript()), out, out)
	for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		tail.Add(l)
	}
	p.op.Status.OutputTail = tail.String()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fail(stargate.ReasonScriptFailed, "the reset script failed on %s: %v; see status.outputTail", p.server.Spec.IPAddress, err)
	}
	return fmt.Sprintf("reset host %s: kubelet stopped and disabled, its configuration and certificates removed", p.server.Spec.IPAddress), nil
}

// deleteNode deletes the Server's Node, only when Stargate made it for
// this Server (ownNode refuses any other).
func (p *repave) deleteNode(ctx context.Context) (string, error) {
	node, err := p.ownNode(ctx)
	if err != nil {
		return "", err
	}
	if node == nil {
		return fmt.Sprintf("no Node %s to delete", p.nodeName()), nil
	}
	if err := p.r.Client.Delete(ctx, node, client.Preconditions{UID: &node.UID}); err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("delete Node %s: %w", node.Name, err)
	}
	return fmt.Sprintf("deleted Node %s", node.Name), nil
}

// lockedBuffer is a bytes.Buffer written from more than one goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
