package repave

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/sshexec"
	"github.com/stargate-k8s/stargate/test/dcsim"
	"github.com/stargate-k8s/stargate/test/tailnet"
)

// tailnetJoinScript is the simulated worker's bootstrap for a profile
// that names a Tailscale auth key: what the default Ubuntu script does on
// a real host (tailscale up --auth-key=file:... as the node name, then
// remove the key), with a real tailscaled started in the worker's own
// network namespace instead of by systemd, followed by the stand-in
// kubelet of the other profiles. It records the key file's mode.
func tailnetJoinScript(ctl *tailnet.Control, stateDir, standin string) string {
	b := ctl.Binaries()
	var env strings.Builder
	for _, kv := range ctl.TailscaledEnv() {
		env.WriteString(" " + sshexec.Quote(kv))
	}
	prelude := fmt.Sprintf(`#!/bin/bash
set -euo pipefail
# shellcheck source=/dev/null
. ./stargate.env
: "${STARGATE_TAILSCALE_AUTHKEY_FILE:?no Tailscale auth key was delivered}"
keyfile=$PWD/$STARGATE_TAILSCALE_AUTHKEY_FILE
ts=%[1]s/"$STARGATE_NODE_NAME"-ts
mkdir -p "$ts"
stat -c %%a "$keyfile" >"$ts/keymode"
if [ -s "$ts/pid" ]; then kill "$(cat "$ts/pid")" 2>/dev/null || true; fi
env%[2]s setsid %[3]s --statedir="$ts" --socket="$ts/ts.sock" --no-logs-no-support --tun=tsw0 --port=0 >"$ts/tailscaled.log" 2>&1 </dev/null &
echo $! >"$ts/pid"
for _ in $(seq 100); do [ -S "$ts/ts.sock" ] && break; sleep 0.1; done
%[4]s --socket="$ts/ts.sock" up --auth-key="file:$keyfile" --hostname="$STARGATE_NODE_NAME" \
  --login-server="$STARGATE_TAILSCALE_LOGIN_SERVER" --accept-routes=false --accept-dns=false --netfilter-mode=off --timeout=60s
rm -f "$keyfile"
echo "joined the tailnet as $STARGATE_NODE_NAME"
`, sshexec.Quote(stateDir), env.String(), sshexec.Quote(b.Tailscaled), sshexec.Quote(b.Tailscale))
	rest := dcsim.StandinScriptWithHeartbeat(stateDir, standin, 0, standinHeartbeat)
	// The stand-in part without its own header.
	rest = rest[strings.Index(rest, "state="):]
	return prelude + rest
}

// A profile that names tailscaleAuthKeySecretRef has the repave join the
// host to the tailnet with that key: a real tailscaled on the simulated
// worker registers with the tailnet's real control server under the node's
// name. The key reaches the host only as a file of mode 0600 that the
// script removes, and it appears in no status, event or controller log.
func TestRepaveJoinsHostToTailnetWithProfileAuthKey(t *testing.T) {
	const name = "ts-join-1"
	ctx := context.Background()
	// A short directory: tailscaled's socket path has room for 107 bytes.
	dir, err := os.MkdirTemp("", "tsj")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctl, err := tailnet.StartControl(filepath.Join(dir, "ctl"), tailnet.ControlOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ctl.Close(); err != nil {
			t.Errorf("stop the tailnet: %v", err)
		}
	})
	h := env.sim.Workers[30]
	// The worker reaches the control server over the underlay, as a
	// datacenter host reaches Tailscale's through its uplink.
	if err := ctl.AttachUnderlay(h.NetNS, "tsu0", netip.MustParsePrefix("203.0.113.230/26")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "-n", h.NetNS, "link", "del", "tsu0").Run() })
	tsState := filepath.Join(dir, "hosts")
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(tsState, name+"-ts", "pid")); err == nil {
			_ = exec.Command("kill", strings.TrimSpace(string(b))).Run()
		}
	})

	// The profile: the fixtures' SSH Secret, this script, and the auth key
	// Secret in the shape docs/operations.md gives.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tailscale-auth", Namespace: dc},
		StringData: map[string]string{"authkey": ctl.AuthKey, "loginServer": ctl.URL}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "tailnet-script", Namespace: dc},
		Data: map[string]string{"bootstrap.sh": tailnetJoinScript(ctl, tsState, env.standin)}}
	prof := &v1.ProvisioningProfile{ObjectMeta: metav1.ObjectMeta{Name: "tailnet", Namespace: dc},
		Spec: v1.ProvisioningProfileSpec{
			KubernetesVersion:         "1.37",
			AdminUsername:             "root",
			SSHCredentialsSecretRef:   &v1.LocalObjectReference{Name: dcsim.SSHSecret},
			TailscaleAuthKeySecretRef: &v1.LocalObjectReference{Name: secret.Name},
			BootstrapScriptRef:        &v1.ConfigMapKeyReference{Name: cm.Name, Key: "bootstrap.sh"},
		}}
	for _, o := range []client.Object{secret, cm, prof} {
		if err := env.c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
		o := o
		t.Cleanup(func() { _ = env.c.Delete(context.Background(), o) })
	}
	ctrl := env.startController(t, "tailnet")
	env.server(t, name, h, func(s *v1.Server) { s.Spec.ProvisioningProfileRef = &v1.LocalObjectReference{Name: prof.Name} })

	opName := env.repave(t, name, "")
	op := env.waitOp(t, opName, 3*time.Minute, finished)
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("repave: %s: %s\noutput:\n%s", op.Status.Phase, op.Status.Message, op.Status.OutputTail)
	}

	// The host is on the tailnet, under the node's name, as the control
	// server sees it.
	devs, err := ctl.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var joined []string
	for _, d := range devs {
		joined = append(joined, d.Hostname)
	}
	if len(devs) != 1 || devs[0].Hostname != name {
		t.Fatalf("tailnet devices %v, want exactly %s", joined, name)
	}
	mode, err := os.ReadFile(filepath.Join(tsState, name+"-ts", "keymode"))
	if err != nil || strings.TrimSpace(string(mode)) != "600" {
		t.Errorf("the auth key file had mode %q (%v), want 600", mode, err)
	}
	left, _ := filepath.Glob(filepath.Join(env.workDir, string(op.UID), "tailscale-authkey"))
	if len(left) > 0 {
		t.Errorf("the auth key is still on the host after the bootstrap: %v", left)
	}

	// The key is nowhere a user or a log reader sees.
	ctrl.stop()
	logb, _ := os.ReadFile(ctrl.log)
	var events corev1.EventList
	if err := env.c.List(ctx, &events, client.InNamespace(dc)); err != nil {
		t.Fatal(err)
	}
	var srv v1.Server
	if err := env.c.Get(ctx, client.ObjectKey{Namespace: dc, Name: name}, &srv); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{"controller log": string(logb), "operation status": fmt.Sprintf("%+v", op.Status), "server status": fmt.Sprintf("%+v", srv.Status)}
	for _, e := range events.Items {
		seen["event "+e.Name] = e.Message
	}
	for where, text := range seen {
		if strings.Contains(text, ctl.AuthKey) {
			t.Errorf("the auth key appears in the %s", where)
		}
	}
}
