package bootstrap

import (
	"archive/tar"
	"bytes"
	_ "embed"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// UbuntuScript is the default node bootstrap script (Ubuntu 22.04/24.04).
//
//go:embed scripts/ubuntu.sh
var UbuntuScript []byte

// ResetScript is the default node reset of a Decommission (the reverse of
// UbuntuScript): the kubelet stopped and disabled, its configuration,
// credentials and state removed. It is idempotent.
//
//go:embed scripts/reset.sh
var ResetScript []byte

// runnerScript starts the bootstrap script once per Operation and follows it.
//
//go:embed scripts/runner.sh
var runnerScript []byte

// LabelAzureManaged=false keeps AKS's own controllers (routes, node
// lifecycle of VMSS nodes) away from Stargate's nodes.
const LabelAzureManaged = "kubernetes.azure.com/managed"

// NodeConfig is what the bootstrap script needs to know about the node.
type NodeConfig struct {
	NodeName          string
	Server            string
	Datacenter        string
	NodeIP            string
	KubernetesVersion string
	ContainerRuntime  string
	ClusterDNS        string
	// Labels are the profile's node labels; Stargate's own are added.
	Labels map[string]string
	// Taints are "key=value:Effect".
	Taints []string
	// OmitAzureLabel leaves out kubernetes.azure.com/managed=false (for
	// control planes that are not AKS).
	OmitAzureLabel bool
	// Tailscale, when set, has the script join the host to the tailnet.
	Tailscale *TailscaleJoin
}

// TailscaleJoin is what a host needs to join the tailnet: the auth key
// of the profile's tailscaleAuthKeySecretRef, delivered as the file
// TailscaleAuthKeyFile beside the script (mode 0600, never in the
// environment or on a command line), and the control server's URL when
// it is not Tailscale's own.
type TailscaleJoin struct {
	AuthKey     []byte
	LoginServer string
}

// TailscaleAuthKeyFile is the name of the auth key's file in the payload.
const TailscaleAuthKeyFile = "tailscale-authkey"

// NodeLabels are the labels the node registers with: the profile's, then
// Stargate's own, which win.
func (nc NodeConfig) NodeLabels() map[string]string {
	l := map[string]string{}
	for k, v := range nc.Labels {
		l[k] = v
	}
	l[stargate.LabelServer] = nc.Server
	l[stargate.LabelDatacenter] = nc.Datacenter
	if !nc.OmitAzureLabel {
		l[LabelAzureManaged] = "false"
	}
	return l
}

func joinMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// Env is stargate.env: shell assignments the script sources.
func (nc NodeConfig) Env() []byte {
	vars := [][2]string{
		{"STARGATE_NODE_NAME", nc.NodeName},
		{"STARGATE_SERVER", nc.Server},
		{"STARGATE_DATACENTER", nc.Datacenter},
		{"STARGATE_NODE_IP", nc.NodeIP},
		{"STARGATE_KUBERNETES_VERSION", nc.KubernetesVersion},
		{"STARGATE_CONTAINER_RUNTIME", nc.ContainerRuntime},
		{"STARGATE_CLUSTER_DNS", nc.ClusterDNS},
		{"STARGATE_NODE_LABELS", joinMap(nc.NodeLabels())},
		{"STARGATE_NODE_TAINTS", strings.Join(nc.Taints, ",")},
	}
	if nc.Tailscale != nil {
		vars = append(vars,
			[2]string{"STARGATE_TAILSCALE_AUTHKEY_FILE", TailscaleAuthKeyFile},
			[2]string{"STARGATE_TAILSCALE_LOGIN_SERVER", nc.Tailscale.LoginServer})
	}
	var b bytes.Buffer
	b.WriteString("# Written by stargate-controller for this node.\n")
	for _, v := range vars {
		fmt.Fprintf(&b, "%s=%s\n", v[0], shellQuote(v[1]))
	}
	return b.Bytes()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Payload is the tar archive delivered to the server: the script, the
// runner, stargate.env, the bootstrap kubeconfig and the cluster CA, and
// the Tailscale auth key when nc.Tailscale is set.
func Payload(script []byte, nc NodeConfig, kubeconfig, caPEM []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"bootstrap.sh", 0o700, script},
		{"runner.sh", 0o700, runnerScript},
		{"stargate.env", 0o600, nc.Env()},
		{"bootstrap-kubelet.conf", 0o600, kubeconfig},
		{"ca.crt", 0o644, caPEM},
	}
	if nc.Tailscale != nil {
		files = append(files, struct {
			name string
			mode int64
			data []byte
		}{TailscaleAuthKeyFile, 0o600, nc.Tailscale.AuthKey})
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WorkDir is the directory on the server that holds one Operation's
// payload and output. base empty means $HOME/.stargate/operations.
func WorkDir(base, operationUID string) string {
	if base == "" {
		return `"$HOME"/.stargate/operations/` + shellQuote(operationUID)
	}
	return shellQuote(strings.TrimRight(base, "/") + "/" + operationUID)
}

// RunCommand is the remote command that unpacks the payload read from
// stdin (unless the script already started: then stdin is drained) and
// runs or follows the script through the runner. dir comes from WorkDir.
func RunCommand(dir string) string {
	return fmt.Sprintf(`umask 077 && mkdir -p %[1]s && if [ -d %[1]s/started.d ]; then cat >/dev/null; else tar -x -m -o -f - -C %[1]s; fi && exec sh %[1]s/runner.sh %[1]s`, dir)
}

// StartedCommand prints "started" when the script of dir has started.
func StartedCommand(dir string) string {
	return fmt.Sprintf(`if [ -d %[1]s/started.d ]; then echo started; fi`, dir)
}

// StopCommand stops the script of dir (from WorkDir) when it started and
// has not finished, with every process it started (they carry
// STARGATE_OPERATION=<operation UID> in their environment), and records
// its result as exit code 143 with why in its output. It prints a
// StoppedMarker line when the script had started and had not finished.
func StopCommand(dir, why string) string {
	return fmt.Sprintf(`if [ -f %[1]s/runner.sh ]; then exec sh %[1]s/runner.sh %[1]s stop %[2]s; fi`, dir, shellQuote(why))
}

// StoppedMarker starts a line of the runner: "@@stargate-stopped
// <operation UID> <process group>", printed for every script of another
// Operation it stopped on the host before it started its own (and by
// StopCommand).
const StoppedMarker = "@@stargate-stopped "

// ResultMarker starts the runner's last line: "@@stargate-result <Operation
// UID> <exit code> <milliseconds>". The runner takes the UID from its work
// directory's name (WorkDir), so a line of an older Operation's output
// (a script that prints an old output.log, say) is not taken for this one's
// result: use ResultPrefix.
const ResultMarker = "@@stargate-result "

// ResultPrefix is what the result line of Operation operationUID starts
// with; ParseResult reads the rest.
func ResultPrefix(operationUID string) string {
	return ResultMarker + operationUID + " "
}

// maxResultMillis keeps a duration in milliseconds from overflowing
// time.Duration.
const maxResultMillis = math.MaxInt64 / int64(time.Millisecond)

// ParseResult parses the part after ResultPrefix: the exit code (0 to 255,
// as a shell reports it) and the duration in milliseconds.
func ParseResult(s string) (exitCode int, d time.Duration, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("malformed result %q", s)
	}
	code, err1 := strconv.Atoi(f[0])
	ms, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || code < 0 || code > 255 || ms < 0 || ms > maxResultMillis {
		return 0, 0, fmt.Errorf("malformed result %q", s)
	}
	return code, time.Duration(ms) * time.Millisecond, nil
}
