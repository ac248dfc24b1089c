// Package repave tests stargate-controller's repave end to end: a real
// kube-apiserver (with bootstrap token auth) and kube-controller-manager
// (CSR approval and signing), stargate-apiserver behind the aggregator, and
// a simulated datacenter of network namespaces with OpenSSH's sshd, where
// workers are reachable only through the router. On the workers a test
// profile's script starts kubelet-standin, which does the real kubelet TLS
// bootstrap with the delivered token. stargate-controller runs as its own
// process in the simulation's cloud namespace, so tests can kill it.
package repave

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
	"github.com/stargate-k8s/stargate/test/dcsim"
	"github.com/stargate-k8s/stargate/test/framework"
)

const (
	dc = "dc-sim"
	// workers in the simulation: worker-1..3 for single tests, 4..23 for
	// the concurrency test, all 50 for the benchmark.
	simWorkers = 50
	apiPort    = 6443
	// nodeMonitorGracePeriod is how long kube-controller-manager waits for
	// a heartbeat before it marks a Node NotReady: shorter than its 50s
	// default so the test of a stopped kubelet takes less time, and still
	// three heartbeats of the stand-in (standinHeartbeat) long, so a busy
	// machine does not make Nodes flap.
	nodeMonitorGracePeriod = 15 * time.Second
	standinHeartbeat       = 5 * time.Second
)

var env *testEnv

type testEnv struct {
	world      *framework.World
	sim        *dcsim.Sim
	c          client.Client
	dir        string
	controller string // binary
	// controllerKC is the kubeconfig of the controller's ServiceAccount.
	controllerKC string
	standin      string // binary
	caFile       string
	stateDir     string // kubelet-standin state, per node
	workDir      string // --remote-work-dir
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s repave: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func run(m *testing.M) (code int) {
	if err := dcsim.Check(""); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: the repave tests need the datacenter simulation: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := &testEnv{}
	var err error
	if e.dir, err = os.MkdirTemp("", "stargate-repave-"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer func() {
		if code != 0 {
			logf("tests failed; logs kept in %s", e.dir)
		} else {
			_ = os.RemoveAll(e.dir)
		}
	}()
	if err := e.start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: cannot start the repave test world:", err)
		e.stop()
		return 1
	}
	env = e
	defer e.stop()
	return m.Run()
}

func (e *testEnv) start(ctx context.Context) error {
	root, err := framework.RepoRoot()
	if err != nil {
		return err
	}
	bins, err := framework.FindBinaries("")
	if err != nil {
		return err
	}
	binDir := filepath.Join(e.dir, "bin")
	if _, err := framework.BootstrapTokenBinDir(bins, binDir); err != nil {
		return err
	}
	logf("building stargate-controller, kubelet-standin and stargate-apiserver")
	e.controller = filepath.Join(binDir, "stargate-controller")
	e.standin = filepath.Join(binDir, "kubelet-standin")
	for pkg, out := range map[string]string{"./cmd/controller": e.controller, "./test/kubelet-standin": e.standin} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
		}
	}
	apiserver, err := framework.BuildStargate(ctx, root, binDir)
	if err != nil {
		// stargate-apiserver is another issue's work; a previous build serves.
		prev := filepath.Join(bins.Dir, "stargate-apiserver")
		if _, serr := os.Stat(prev); serr != nil {
			return err
		}
		logf("building stargate-apiserver failed, using %s: %v", prev, err)
		apiserver = prev
	}
	e.world, err = framework.StartWorld(ctx, framework.WorldOptions{
		Dir: filepath.Join(e.dir, "world"), BinDir: binDir, StargateBinary: apiserver, Logf: logf,
		ControllerManager: framework.ControllerManagerOptions{NodeMonitorGracePeriod: nodeMonitorGracePeriod},
	})
	if err != nil {
		return err
	}
	cp := e.world.ControlPlane
	if e.c, err = client.New(cp.Config, client.Options{Scheme: manager.Scheme}); err != nil {
		return err
	}
	e.caFile = filepath.Join(e.dir, "cluster-ca.crt")
	if err := os.WriteFile(e.caFile, cp.Config.CAData, 0o644); err != nil {
		return err
	}
	e.stateDir = filepath.Join(e.dir, "nodes")
	e.workDir = filepath.Join(e.dir, "remote")
	simOpts := dcsim.Options{Dir: filepath.Join(e.dir, "dc"), Workers: simWorkers, Logf: logf}
	if e.sim, err = dcsim.Start(ctx, simOpts); err != nil {
		return err
	}
	u, err := url.Parse(cp.Config.Host)
	if err != nil {
		return err
	}
	if _, err := e.sim.ExposeToWorkers(apiPort, u.Host); err != nil {
		return err
	}
	if _, err := e.sim.ExposeToCloud(u.Host); err != nil {
		return err
	}
	if err := e.fixtures(ctx); err != nil {
		return err
	}
	e.controllerKC, err = e.controllerKubeconfig(ctx, root)
	return err
}

func (e *testEnv) stop() {
	if e.sim != nil {
		if err := e.sim.Stop(); err != nil {
			logf("stop simulation: %v", err)
		}
	}
	if e.world != nil {
		e.world.KeepDir = true
		if err := e.world.Stop(); err != nil {
			logf("stop world: %v", err)
		}
	}
}

func (e *testEnv) fixtures(ctx context.Context) error {
	labels := map[string]string{"example.com/rack": "r1"}
	for _, o := range e.sim.Fixtures(dc, "test:nodes",
		dcsim.Profile{Name: "fast", Script: dcsim.StandinScriptWithHeartbeat(e.stateDir, e.standin, 0, standinHeartbeat), NodeLabels: labels},
		dcsim.Profile{Name: "slow", Script: dcsim.StandinScriptWithHeartbeat(e.stateDir, e.standin, 6*time.Second, standinHeartbeat), NodeLabels: labels},
	) {
		if err := e.c.Create(ctx, o); err != nil {
			return fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// server creates Server name for worker host h (nil: an address no host has).
func (e *testEnv) server(t testing.TB, name string, h *dcsim.Host, mutate func(*v1.Server)) *v1.Server {
	t.Helper()
	s := dcsim.Server(dc, name, h, "fast")
	if mutate != nil {
		mutate(s)
	}
	if err := e.c.Create(context.Background(), s); err != nil {
		t.Fatalf("create Server %s: %v", name, err)
	}
	return s
}

// controllerProc is a running stargate-controller.
type controllerProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (e *testEnv) startController(t testing.TB, name string, extra ...string) *controllerProc {
	t.Helper()
	return e.startControllerBinary(t, e.controller, name, extra...)
}

// startControllerBinary starts the stargate-controller program bin (e.g.
// an older build to compare with).
func (e *testEnv) startControllerBinary(t testing.TB, bin, name string, extra ...string) *controllerProc {
	t.Helper()
	logPath := filepath.Join(e.dir, "controller-"+name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--kubeconfig=" + e.controllerKC,
		"--leader-elect=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:0",
		"--control-plane-mode=aks",
		"--api-server-url=https://" + net.JoinHostPort(dcsim.RouterSubnetIP, strconv.Itoa(apiPort)),
		"--api-server-ca-file=" + e.caFile,
		"--api-server-tls-server-name=localhost",
		"--remote-work-dir=" + e.workDir,
		"--ssh-connect-attempts=3",
		"--ssh-retry-backoff=200ms",
		"--ssh-handshake-timeout=3s",
		"--node-ready-timeout=90s",
		"--v=2",
	}
	cmd := e.sim.Command(bin, append(args, extra...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &controllerProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

// kill ends the process at once (SIGKILL), as a crash would.
func (p *controllerProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *controllerProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	framework.StopProcess(p.cmd.Process, p.done, os.Interrupt, 15*time.Second)
}

// repave asks for a repave the way users do and returns the Operation name.
func (e *testEnv) repave(t testing.TB, server, profile string) string {
	t.Helper()
	body := `{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","reason":"test"`
	if profile != "" {
		body += `,"provisioningProfileRef":{"name":"` + profile + `"}`
	}
	body += "}"
	res := e.world.Kubectl.RunWithInput(context.Background(), body, "create", "--raw",
		"/apis/stargate.io/v1alpha1/namespaces/"+dc+"/servers/"+server+"/repave", "-f", "-")
	if res.Err != nil {
		t.Fatalf("repave %s: %v", server, res)
	}
	name := between(res.Stdout, `"name":"`, `"`)
	if name == "" {
		t.Fatalf("repave answered no Operation: %s", res.Stdout)
	}
	return name
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	j := strings.Index(s, end)
	if j < 0 {
		return ""
	}
	return s[:j]
}

func (e *testEnv) op(t testing.TB, name string) *v1.Operation {
	t.Helper()
	var op v1.Operation
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: dc, Name: name}, &op); err != nil {
		t.Fatalf("get Operation %s: %v", name, err)
	}
	return &op
}

// waitOp waits until the Operation satisfies done, or fails the test.
func (e *testEnv) waitOp(t testing.TB, name string, timeout time.Duration, done func(*v1.Operation) bool) *v1.Operation {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		op := e.op(t, name)
		if done(op) {
			return op
		}
		if time.Now().After(deadline) {
			t.Fatalf("Operation %s did not get there within %s; phase %s, message %q, steps %+v", name, timeout, op.Status.Phase, op.Status.Message, op.Status.Steps)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func finished(op *v1.Operation) bool {
	return op.Status.Phase == v1.OperationSucceeded || op.Status.Phase == v1.OperationFailed
}
