package operations

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/bootstrap"
	"github.com/stargate-k8s/stargate/pkg/cilium"
	"github.com/stargate-k8s/stargate/pkg/controller/datacenter"
	"github.com/stargate-k8s/stargate/pkg/controller/sshcreds"
	"github.com/stargate-k8s/stargate/pkg/sshexec"
)

func (p *repave) resolve(ctx context.Context) error {
	ns := p.op.Namespace
	p.server = &v1.Server{}
	p.profile = &v1.ProvisioningProfile{}
	var dc *v1.Datacenter
	errs := p.getAll(
		func() error {
			return p.r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: p.op.Spec.ServerRef.Name}, p.server)
		},
		func() error {
			return p.r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: p.op.Spec.ProvisioningProfileRef.Name}, p.profile)
		},
		// Around the cache too: a refusal fails the Operation for good.
		func() (err error) {
			dc, err = datacenter.Find(ctx, p.r.APIReader, ns)
			return err
		})
	if err := errs[0]; err != nil {
		p.server = nil
		if apierrors.IsNotFound(err) {
			return fail(stargate.ReasonServerNotFound, "Server %s/%s (spec.serverRef) does not exist", ns, p.op.Spec.ServerRef.Name)
		}
		return err
	}
	// One bootstrap at a time per Server: only the Operation the Server's
	// claim names runs. POST servers/NAME/repave claims the Server (after
	// checking its last Operation is done) and then creates the
	// Operation; one created any other way, or one the Server has since
	// given to a newer Operation, touches neither the host nor the
	// Server's status.
	if claim := p.server.Status.LastOperation; claim != p.op.Name && !p.serverDeleted {
		holder := "no Operation"
		if claim != "" {
			holder = "Operation " + claim
		}
		return fail(stargate.ReasonNotClaimed, "Server %s/%s is claimed by %s (status.lastOperation), not by this Operation; an Operation runs only when POST servers/%s/repave claimed the Server for it (kubectl create --raw /apis/stargate.io/v1alpha1/namespaces/%s/servers/%s/repave -f request.json)",
			ns, p.server.Name, holder, p.server.Name, ns, p.server.Name)
	}
	p.claimed = true
	// Only a Server of a declared datacenter, inside its network, is
	// repaved: decided before anything else, so nothing (no token, no SSH)
	// exists for any other.
	if err := errs[2]; err != nil {
		return err
	}
	if c := datacenter.Check(p.server, dc); c.Status != metav1.ConditionTrue {
		return fail(c.Reason, "%s", c.Message)
	}
	if err := errs[1]; err != nil {
		if apierrors.IsNotFound(err) {
			return fail(stargate.ReasonProfileNotFound, "ProvisioningProfile %s/%s (spec.provisioningProfileRef) does not exist", ns, p.op.Spec.ProvisioningProfileRef.Name)
		}
		return err
	}
	creds, err := sshcreds.Get(ctx, p.r.APIReader, p.profile)
	if err != nil {
		if e, ok := sshcreds.AsError(err); ok {
			return fail(e.Reason, "%s", e.Message)
		}
		return err
	}
	p.redact.AddPrivateKey(creds.PrivateKey)
	p.creds = creds
	var cm corev1.ConfigMap
	sr := p.profile.Spec.BootstrapScriptRef
	if sr != nil {
		if err := p.r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: sr.Name}, &cm); err != nil {
			switch {
			case apierrors.IsNotFound(err):
				return fail(stargate.ReasonScriptNotFound, "ConfigMap %s/%s (ProvisioningProfile %s spec.bootstrapScriptRef) does not exist", ns, sr.Name, p.profile.Name)
			case apierrors.IsForbidden(err):
				return fail(stargate.ReasonCredentialsForbidden, "stargate-controller may not read the bootstrap script ConfigMap %s/%s (ProvisioningProfile %s): %s: %v", ns, sr.Name, p.profile.Name, datacenter.BindHint(ns), err)
			}
			return err
		}
	}
	if err := p.resolveTailscale(ctx); err != nil {
		return err
	}
	p.script = bootstrap.UbuntuScript
	if sr != nil {
		s, ok := cm.Data[sr.Key]
		if !ok {
			return fail(stargate.ReasonScriptNotFound, "ConfigMap %s/%s has no key %q (ProvisioningProfile %s spec.bootstrapScriptRef)", ns, sr.Name, sr.Key, p.profile.Name)
		}
		p.script = []byte(s)
	}
	return p.checkNodeName(ctx)
}

// Keys of the Secret a profile's tailscaleAuthKeySecretRef names.
const (
	// TailscaleKeyAuthKey holds the auth key; TailscaleKeyAuthKeyEnv is
	// read when it is missing (the name of Tailscale's own environment
	// variable, which Secrets made for containerboot use).
	TailscaleKeyAuthKey    = "authkey"
	TailscaleKeyAuthKeyEnv = "TS_AUTHKEY"
	// TailscaleKeyLoginServer optionally names the control server (e.g.
	// a Headscale URL) when it is not Tailscale's: an auth key is valid
	// only on the control server that issued it, so the two travel
	// together.
	TailscaleKeyLoginServer = "loginServer"
)

// resolveTailscale reads the auth key of the profile's
// tailscaleAuthKeySecretRef, when it names one: the script then joins the
// host to the tailnet with it.
func (p *repave) resolveTailscale(ctx context.Context) error {
	ref := p.profile.Spec.TailscaleAuthKeySecretRef
	if ref == nil || ref.Name == "" {
		return nil
	}
	ns := p.profile.Namespace
	var sec corev1.Secret
	if err := p.r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, &sec); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return fail(stargate.ReasonCredentialsNotFound, "Tailscale auth key Secret %s/%s (ProvisioningProfile %s spec.tailscaleAuthKeySecretRef) does not exist", ns, ref.Name, p.profile.Name)
		case apierrors.IsForbidden(err):
			return fail(stargate.ReasonCredentialsForbidden, "stargate-controller may not read the Tailscale auth key Secret %s/%s (ProvisioningProfile %s): %s: %v", ns, ref.Name, p.profile.Name, datacenter.BindHint(ns), err)
		}
		return err
	}
	key := bytes.TrimSpace(sec.Data[TailscaleKeyAuthKey])
	if len(key) == 0 {
		key = bytes.TrimSpace(sec.Data[TailscaleKeyAuthKeyEnv])
	}
	if len(key) == 0 {
		return fail(stargate.ReasonCredentialsInvalid, "Secret %s/%s (ProvisioningProfile %s spec.tailscaleAuthKeySecretRef) has no key %s (or %s)", ns, ref.Name, p.profile.Name, TailscaleKeyAuthKey, TailscaleKeyAuthKeyEnv)
	}
	if bytes.ContainsAny(key, "\r\n") {
		return fail(stargate.ReasonCredentialsInvalid, "Secret %s/%s key %s holds more than one line; an auth key is one line", ns, ref.Name, TailscaleKeyAuthKey)
	}
	login := strings.TrimSpace(string(sec.Data[TailscaleKeyLoginServer]))
	if login != "" {
		u, err := url.Parse(login)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fail(stargate.ReasonCredentialsInvalid, "Secret %s/%s key %s is %q: want the control server's URL, e.g. https://headscale.example.com", ns, ref.Name, TailscaleKeyLoginServer, login)
		}
	}
	p.redact.AddSecret(string(key))
	p.tailscale = &bootstrap.TailscaleJoin{AuthKey: append(bytes.Clone(key), '\n'), LoginServer: login}
	return nil
}

// checkNodeName refuses, before any token exists, a hostname that another
// Server (in any namespace) also claims or that names a Node Stargate did
// not make for this Server: the token would otherwise buy that identity,
// and RemoveStaleNode would delete another machine's Node.
func (p *repave) checkNodeName(ctx context.Context) error {
	name := p.nodeName()
	var servers v1.ServerList
	if err := p.r.Client.List(ctx, &servers); err != nil {
		return fmt.Errorf("list Servers to check that hostname %s is unique: %w", name, err)
	}
	for _, s := range servers.Items {
		if s.Spec.Hostname == name && (s.Namespace != p.server.Namespace || s.Name != p.server.Name) {
			return fail(stargate.ReasonNodeNameConflict, "spec.hostname %s is also the hostname of Server %s/%s; a node name belongs to one Server: rename one of them", name, s.Namespace, s.Name)
		}
	}
	_, err := p.ownNode(ctx)
	return err
}

// ownNode reads the Node of the Server's hostname: nil when there is none,
// a NodeNameConflict failure when it is not the one Stargate made for this
// Server (it lacks the Server's owner labels), since another machine uses
// the name.
func (p *repave) ownNode(ctx context.Context) (*corev1.Node, error) {
	var node corev1.Node
	err := p.r.APIReader.Get(ctx, types.NamespacedName{Name: p.nodeName()}, &node)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get Node %s: %w", p.nodeName(), err)
	}
	if !cilium.Owned(node.Labels, stargate.OwnerLabels(p.server.Name, p.server.Namespace)) {
		return nil, fail(stargate.ReasonNodeNameConflict, "Node %s exists but is not labelled %s=%s, %s=%s: another machine uses this name; rename spec.hostname or delete that Node",
			node.Name, stargate.LabelServer, p.server.Name, stargate.LabelDatacenter, p.server.Namespace)
	}
	return &node, nil
}

func (p *repave) sshConfig() (sshexec.Config, error) {
	spec := p.server.Spec
	port := int(spec.SSHPort)
	if port == 0 {
		port = 22
	}
	target, err := sshexec.HostKeyCallback(spec.HostKey, p.creds.KnownHosts)
	if err != nil {
		return sshexec.Config{}, fail(stargate.ReasonCredentialsInvalid, "host key of server %s: %v", p.server.Name, err)
	}
	cfg := sshexec.Config{
		User:             p.creds.User,
		Signer:           p.creds.Signer,
		Target:           sshexec.Endpoint{Addr: net.JoinHostPort(spec.IPAddress, strconv.Itoa(port)), HostKey: target},
		Dial:             p.r.Dial,
		HandshakeTimeout: p.r.Opts.SSHHandshakeTimeout,
		Attempts:         p.r.Opts.SSHAttempts,
		Backoff:          p.r.Opts.SSHBackoff,
		OnRetry: func(attempt int, err error, wait time.Duration) {
			p.log.Info("SSH connection failed, retrying", "attempt", attempt, "wait", wait, "error", p.redact.String(err.Error()))
		},
	}
	if spec.RouterIP != "" {
		jump, err := sshexec.KnownHosts(p.creds.KnownHosts)
		if err != nil {
			return cfg, err
		}
		// Repaves share a router connection only when they verify the
		// router against the same known_hosts data.
		sum := sha256.Sum256(p.creds.KnownHosts)
		cfg.Jump = &sshexec.Endpoint{Addr: net.JoinHostPort(spec.RouterIP, strconv.Itoa(p.r.Opts.RouterSSHPort)), HostKey: jump, HostKeyID: "known_hosts:" + hex.EncodeToString(sum[:])}
		cfg.JumpPool = p.r.Jumps
	}
	return cfg, nil
}

// dial connects over SSH, classifying what cannot be retried.
func (p *repave) dial(ctx context.Context) (*sshexec.Client, error) {
	if p.ssh != nil {
		return p.ssh, nil
	}
	cfg, err := p.sshConfig()
	if err != nil {
		return nil, err
	}
	c, err := sshexec.Connect(ctx, cfg)
	if err != nil {
		var mm *sshexec.HostKeyMismatchError
		var uk *sshexec.HostKeyUnknownError
		switch {
		case ctx.Err() != nil:
			return nil, err
		case errors.As(err, &mm):
			return nil, &failure{reason: stargate.ReasonHostKeyMismatch, err: fmt.Errorf("%w; no command was run. If the server was reinstalled, update spec.hostKey or the known_hosts entry", err)}
		case errors.As(err, &uk):
			return nil, &failure{reason: stargate.ReasonHostKeyUnknown, err: err}
		case sshexec.IsPermanent(err):
			return nil, &failure{reason: stargate.ReasonAuthenticationFailed, err: fmt.Errorf("%s refused the SSH key of Secret %s as user %s: %w", cfg.Target.Addr, p.profile.Spec.SSHCredentialsSecretRef.Name, cfg.User, err)}
		default:
			via := ""
			if cfg.Jump != nil {
				via = " through router " + cfg.Jump.Addr
			}
			return nil, &failure{reason: stargate.ReasonUnreachable, err: fmt.Errorf("cannot reach %s%s: %w", cfg.Target.Addr, via, err)}
		}
	}
	p.ssh = c
	return c, nil
}

func (p *repave) connect(ctx context.Context) (string, error) {
	if _, err := p.dial(ctx); err != nil {
		return "", err
	}
	via := ""
	if p.server.Spec.RouterIP != "" {
		via = " through router " + p.server.Spec.RouterIP
	}
	// Through a jump host the client's RemoteAddr is the channel's
	// (0.0.0.0:0), so name the server's own address.
	addr := net.JoinHostPort(p.server.Spec.IPAddress, strconv.Itoa(int(p.server.Spec.SSHPort)))
	return fmt.Sprintf("connected to %s%s as %s; host key verified (%s)", addr, via, p.creds.User, hostKeyKind(p.server.Spec.HostKey)), nil
}

func hostKeyKind(pinned string) string {
	if pinned != "" {
		return "pinned spec.hostKey"
	}
	return "known_hosts"
}

func (p *repave) tokenLabels() map[string]string {
	return map[string]string{
		bootstrap.LabelOperation:  string(p.op.UID),
		bootstrap.LabelServer:     p.server.Name,
		bootstrap.LabelDatacenter: p.server.Namespace,
	}
}

// existingToken finds the token Secret this Operation made, if any.
func (p *repave) existingToken(ctx context.Context) (*corev1.Secret, error) {
	var list corev1.SecretList
	if err := p.r.APIReader.List(ctx, &list, client.InNamespace(bootstrap.TokenNamespace),
		client.MatchingLabels{bootstrap.LabelOperation: string(p.op.UID)}); err != nil {
		return nil, fmt.Errorf("list bootstrap tokens: %w", err)
	}
	if len(list.Items) == 0 {
		return nil, nil
	}
	return &list.Items[0], nil
}

// ensureRBAC makes the bootstrap RBAC once per process. It reads around
// the cache: a cached read would start an informer on every
// ClusterRoleBinding for three reads.
func (r *Reconciler) ensureRBAC(ctx context.Context) error {
	r.rbacMu.Lock()
	defer r.rbacMu.Unlock()
	if r.rbacOK {
		return nil
	}
	c := r.Direct
	if c == nil {
		c = r.Client
	}
	if err := bootstrap.EnsureRBAC(ctx, c); err != nil {
		return err
	}
	r.rbacOK = true
	return nil
}

func (p *repave) createToken(ctx context.Context) (string, error) {
	if err := p.r.ensureRBAC(ctx); err != nil {
		return "", err
	}
	// A run interrupted after creating the Secret finds it again instead
	// of making a second token. Only a run that recorded this step as
	// Running can have made one, so a fresh step need not look.
	if p.resumedSteps[StepToken] {
		if s, err := p.existingToken(ctx); err != nil {
			return "", err
		} else if s != nil {
			p.token = s
			return fmt.Sprintf("bootstrap token %s exists (group %s)", s.Name, bootstrap.Group), nil
		}
	}
	t, err := bootstrap.NewToken()
	if err != nil {
		return "", err
	}
	p.redact.AddToken(t)
	expires := time.Now().Add(p.r.Opts.TokenLifetime())
	s := bootstrap.TokenSecret(t, expires, fmt.Sprintf("stargate repave %s/%s of server %s", p.op.Namespace, p.op.Name, p.server.Name), p.tokenLabels())
	if err := p.r.Client.Create(ctx, s); err != nil {
		return "", fmt.Errorf("create bootstrap token Secret: %w", err)
	}
	p.token, p.tokenOnly, p.tokenValue = s, !p.resumedSteps[StepToken], &t
	return fmt.Sprintf("bootstrap token %s created for group %s, expires %s", s.Name, bootstrap.Group, expires.UTC().Format(time.RFC3339)), nil
}

func (p *repave) nodeName() string { return p.server.Spec.Hostname }

func (p *repave) removeStaleNode(ctx context.Context) (string, error) {
	node, err := p.ownNode(ctx)
	if err != nil {
		return "", err
	}
	if node == nil {
		return fmt.Sprintf("no Node %s to remove", p.nodeName()), nil
	}
	if err := p.r.Client.Delete(ctx, node, client.Preconditions{UID: &node.UID}); err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("delete Node %s: %w", node.Name, err)
	}
	return fmt.Sprintf("deleted the Node %s of the previous install", node.Name), nil
}

func (p *repave) cluster(ctx context.Context) (bootstrap.Cluster, error) {
	ca := p.r.caPEM
	if len(ca) == 0 {
		var cm corev1.ConfigMap
		// Around the cache: a cached read would list and watch every
		// ConfigMap of the cluster for this one.
		if err := p.r.APIReader.Get(ctx, types.NamespacedName{Namespace: metav1.NamespaceSystem, Name: "kube-root-ca.crt"}, &cm); err != nil {
			return bootstrap.Cluster{}, fmt.Errorf("no --api-server-ca-file and cannot read kube-system/kube-root-ca.crt: %w", err)
		}
		ca = []byte(cm.Data["ca.crt"])
	}
	return bootstrap.Cluster{Server: p.r.Opts.APIServerURL, CAData: ca, TLSServerName: p.r.Opts.APIServerTLSServerName}, nil
}

func (p *repave) payload(ctx context.Context) ([]byte, error) {
	var t bootstrap.Token
	if p.tokenValue != nil {
		// Made a moment ago by this run.
		t = *p.tokenValue
	} else {
		s := p.token
		if s == nil {
			var err error
			if s, err = p.existingToken(ctx); err != nil {
				return nil, err
			}
		}
		if s == nil {
			return nil, fail(stargate.ReasonInternal, "the bootstrap token of this Operation is gone (deleted or expired) before the script started; repave again")
		}
		var err error
		if t, err = bootstrap.TokenFromSecret(s); err != nil {
			return nil, fail(stargate.ReasonInternal, "%v", err)
		}
	}
	p.redact.AddToken(t)
	cl, err := p.cluster(ctx)
	if err != nil {
		return nil, err
	}
	kc, err := bootstrap.Kubeconfig(cl, t)
	if err != nil {
		return nil, err
	}
	var taints []string
	for _, t := range p.profile.Spec.NodeTaints {
		taints = append(taints, fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect))
	}
	nc := bootstrap.NodeConfig{
		NodeName:          p.nodeName(),
		Server:            p.server.Name,
		Datacenter:        p.server.Namespace,
		NodeIP:            p.server.Spec.IPAddress,
		KubernetesVersion: p.profile.Spec.KubernetesVersion,
		ContainerRuntime:  string(p.profile.Spec.ContainerRuntime),
		ClusterDNS:        p.r.Opts.ClusterDNS,
		Labels:            p.profile.Spec.NodeLabels,
		Taints:            taints,
		Tailscale:         p.tailscale,
	}
	nc.OmitAzureLabel = p.r.Opts.ControlPlaneMode != ModeAKS
	return bootstrap.Payload(p.script, nc, kc, cl.CAData)
}

func (p *repave) runScript(ctx context.Context) (string, error) {
	c, err := p.dial(ctx)
	if err != nil {
		return "", err
	}
	dir := bootstrap.WorkDir(p.r.Opts.RemoteWorkDir, string(p.op.UID))
	started := false
	if p.resumedSteps[StepScript] {
		// Bounded like every command: a deadline here, the output by
		// sshexec.
		cctx, cancel := context.WithTimeout(ctx, resumeCheckTimeout)
		out, err := c.Output(cctx, bootstrap.StartedCommand(dir))
		cancel()
		if err != nil {
			return "", fmt.Errorf("check whether the script started: %w", err)
		}
		started = strings.TrimSpace(string(out)) == "started"
	}
	began := time.Now()
	phase := func(name string) {
		p.scriptPhases = append(p.scriptPhases, name, time.Since(began).Round(time.Millisecond).String())
	}
	var stdin io.Reader = bytes.NewReader(nil)
	if !started {
		payload, err := p.payload(ctx)
		if err != nil {
			return "", err
		}
		stdin = bytes.NewReader(payload)
	} else {
		p.log.Info("the bootstrap script already started; following it")
	}
	// A resumed script gets what is left of --bootstrap-script-timeout
	// from the step's recorded start, not a new timeout per restart.
	sctx, cancel := context.WithDeadline(ctx, p.stepDeadline(StepScript, p.r.Opts.ScriptTimeout))
	defer cancel()
	tail := newTail(p.r.Opts.OutputTailBytes, p.redact)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	// rctx ends the session as soon as the result is in: the runner on the
	// server only tidies up after that.
	rctx, rcancel := context.WithCancel(sctx)
	defer rcancel()
	phase("payload")
	go func() {
		err := c.Run(rctx, bootstrap.RunCommand(dir), stdin, pw, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	var result string
	lastFlush := time.Now()
	// Over-long lines come in pieces, so one huge line cannot hide the
	// result line after it.
	sc := bootstrap.NewOutputScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if len(p.scriptPhases) == 2 {
			phase("firstOutput")
		}
		if r, ok := strings.CutPrefix(line, bootstrap.ResultPrefix(string(p.op.UID))); ok {
			result = r
			if _, _, err := bootstrap.ParseResult(r); err == nil {
				phase("result")
				rcancel()
				pr.CloseWithError(io.EOF)
				break
			}
			continue
		}
		if r, ok := strings.CutPrefix(line, bootstrap.StoppedMarker); ok {
			p.stoppedScript(r)
			continue
		}
		tail.Add(line)
		if time.Since(lastFlush) > 2*time.Second {
			p.op.Status.OutputTail = tail.String()
			if err := p.updateStatus(ctx); err != nil {
				p.log.Error(err, "stream script output into status")
			}
			lastFlush = time.Now()
		}
	}
	if result == "" {
		_, _ = io.Copy(io.Discard, pr)
	}
	runErr := <-done
	p.op.Status.OutputTail = tail.String()
	if result == "" {
		if sctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			// Stopped before the Operation ends, so no later repave
			// finds it running.
			stopped := "it was stopped on the host"
			if err := p.stopScript(ctx, "after --bootstrap-script-timeout "+p.r.Opts.ScriptTimeout.String()); err != nil {
				stopped = "stopping it on the host failed (the next repave of this server stops it before it starts): " + err.Error()
			}
			return "", fail(stargate.ReasonScriptFailed, "the bootstrap script did not finish within %s (--bootstrap-script-timeout); %s; see status.outputTail", p.r.Opts.ScriptTimeout, stopped)
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		// The session broke (network, sshd restart): the script goes on
		// on the server; the next reconcile follows it again.
		_ = c.Close()
		p.ssh = nil
		return "", fmt.Errorf("lost the SSH session while the script ran: %v", runErr)
	}
	code, d, err := bootstrap.ParseResult(result)
	if err != nil {
		return "", fail(stargate.ReasonInternal, "%v", err)
	}
	p.scriptTime = d
	if code != 0 {
		return "", fail(stargate.ReasonScriptFailed, "the bootstrap script exited with status %d after %s; see status.outputTail", code, d.Round(time.Millisecond))
	}
	msg := fmt.Sprintf("the bootstrap script succeeded in %s", d.Round(time.Millisecond))
	if len(p.stoppedOthers) > 0 {
		msg += fmt.Sprintf("; before it started, the unfinished script of Operation %s was stopped on the host", strings.Join(p.stoppedOthers, ", "))
	}
	return msg, nil
}

// resumeCheckTimeout bounds the command that checks whether a resumed
// script started, and stopScript.
const resumeCheckTimeout = 30 * time.Second

// stoppedScript records a line of the runner saying it stopped another
// Operation's unfinished script (rest: "<operation UID> <process group>")
// before this one's started.
func (p *repave) stoppedScript(rest string) {
	f := strings.Fields(rest)
	if len(f) == 0 {
		return
	}
	uid := f[0]
	if uid == string(p.op.UID) {
		return
	}
	p.stoppedOthers = append(p.stoppedOthers, uid)
	p.log.Info("stopped the unfinished bootstrap script of another Operation on the host before this one's started", "operationUID", uid)
	p.r.Recorder.Eventf(p.op, p.server, corev1.EventTypeNormal, stargate.ReasonScriptStopped, "Repave",
		"Stopped the unfinished bootstrap script of Operation UID %s on server %s before this one's started", uid, p.server.Name)
}

// stopScript stops this Operation's script on the host if it started and
// has not finished (bootstrap.StopCommand), with every process it
// started, why saying why in its output. It is bounded by
// resumeCheckTimeout and uses a fresh connection when the run has none.
func (p *repave) stopScript(ctx context.Context, why string) error {
	ctx, cancel := context.WithTimeout(ctx, resumeCheckTimeout)
	defer cancel()
	c, err := p.dial(ctx)
	if err != nil {
		return err
	}
	dir := bootstrap.WorkDir(p.r.Opts.RemoteWorkDir, string(p.op.UID))
	out, err := c.Output(ctx, bootstrap.StopCommand(dir, why))
	if err != nil {
		// The connection may be what failed: the next user dials anew.
		_ = c.Close()
		p.ssh = nil
		return err
	}
	if strings.Contains(string(out), bootstrap.StoppedMarker+string(p.op.UID)) {
		p.log.Info("stopped the bootstrap script on the host", "why", why)
	}
	return nil
}

func (p *repave) waitForNode(ctx context.Context) (string, error) {
	start := time.Now()
	defer func() { p.nodeWait = time.Since(start) }()
	// A resumed wait gets what is left of the step's own deadline.
	deadline := time.NewTimer(time.Until(p.stepDeadline(StepWaitForNode, p.r.Opts.NodeReadyTimeout)))
	defer deadline.Stop()
	poll := time.NewTicker(5 * time.Second)
	defer poll.Stop()
	name := p.nodeName()
	for {
		// Registered before the read, so a change right after it is not
		// missed; unregistered on every way out.
		changed, done := p.r.nodes.wait(name)
		msg, lastState, err := p.nodeState(ctx, name)
		if msg != "" || err != nil {
			done()
			return msg, err
		}
		select {
		case <-ctx.Done():
			done()
			return "", ctx.Err()
		case <-deadline.C:
			done()
			return "", fail(stargate.ReasonNodeNotReady, "Node %s %s within %s (--node-ready-timeout); check kubelet on the server (journalctl -u kubelet)", name, lastState, p.r.Opts.NodeReadyTimeout)
		case <-changed:
		case <-poll.C:
		}
		done()
	}
}

// nodeState reads Node name: a message when it is Ready, else how it
// stands.
func (p *repave) nodeState(ctx context.Context, name string) (ready, lastState string, err error) {
	var node corev1.Node
	err = p.r.Client.Get(ctx, types.NamespacedName{Name: name}, &node)
	switch {
	case apierrors.IsNotFound(err):
		return "", "has not registered", nil
	case err != nil:
		return "", "", err
	case node.Labels[stargate.LabelServer] != p.server.Name:
		return "", "", fail(stargate.ReasonNodeNameConflict, "Node %s registered without label %s=%s: another machine took the name", name, stargate.LabelServer, p.server.Name)
	}
	c := nodeReady(&node)
	if c != nil && c.Status == corev1.ConditionTrue {
		return fmt.Sprintf("Node %s is Ready", name), "", nil
	}
	lastState = "registered but is not Ready"
	if c != nil && c.Message != "" {
		lastState += ": " + c.Message
	}
	return "", lastState, nil
}

func nodeReady(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// finish ends the Operation: Succeeded when err is nil, else Failed at
