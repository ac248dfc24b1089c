package repave

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/operations"
	stargateclient "github.com/stargate-k8s/stargate/pkg/generated/clientset/versioned"
)

// cpuTime is the user+system CPU time of a process so far.
func cpuTime(pid int) (time.Duration, error) {
	own, _, err := procCPU(pid)
	return own, err
}

// procCPU is a process's own user+system CPU time and that of its children
// it has waited for.
func procCPU(pid int) (own, children time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	n := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(v) * time.Second / 100 // USER_HZ is 100 on Linux
	}
	return n(11) + n(12), n(13) + n(14), nil
}

// worldCPU is the CPU time so far of the rest of the test world, by part:
// the API side (kube-apiserver, its etcd, stargate-apiserver,
// kube-controller-manager), the simulated datacenter's sshd (each host's
// listener with every session it has reaped: sshd's own work, the login
// shell, the runner, the script) and the kubelet stand-ins the scripts
// started (detached, so counted on their own).
func (e *testEnv) worldCPU() map[string]time.Duration {
	u, _ := url.Parse(e.world.ControlPlane.Config.Host)
	port := "--secure-port=" + u.Port()
	var etcdURL string
	cmdlines := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		cmdlines[pid] = cmd
		if strings.Contains(cmd, "kube-apiserver") && strings.Contains(cmd, port+" ") {
			if i := strings.Index(cmd, "--etcd-servers="); i >= 0 {
				etcdURL = strings.Fields(cmd[i+len("--etcd-servers="):])[0]
			}
		}
	}
	cpu := map[string]time.Duration{}
	for pid, cmd := range cmdlines {
		argv0 := filepath.Base(strings.Fields(cmd + " x")[0])
		var part string
		switch {
		case argv0 == "kube-apiserver" && strings.Contains(cmd, port+" "):
			part = "kube-apiserver"
		case argv0 == "etcd" && etcdURL != "" && strings.Contains(cmd, "--listen-client-urls="+etcdURL):
			part = "etcd"
		case (argv0 == "stargate-apiserver" || argv0 == "kube-controller-manager" || argv0 == "kubelet-standin") && strings.Contains(cmd, e.dir):
			part = argv0
		case (argv0 == "sshd" || argv0 == "sshd:") && strings.Contains(cmd, " -D ") && strings.Contains(cmd, e.sim.Dir):
			// The listener retitles itself "sshd: /usr/sbin/sshd -D ... [listener] ...".
			part = "sshd"
		default:
			continue
		}
		own, children, err := procCPU(pid)
		if err != nil {
			continue
		}
		cpu[part] += own + children
	}
	return cpu
}

var (
	finishedLine = regexp.MustCompile(`"repave finished".*wall="([^"]+)" script="([^"]+)" nodeWait="([^"]+)" overhead="([^"]+)"(?: steps=(\[[^\]]*\]))?(?: scriptStep=(\[[^\]]*\]))?.*`)
	writesField  = regexp.MustCompile(`statusWrites=(\d+) statusWriteTime="([^"]+)" finish="([^"]+)"`)
	benchRun     atomic.Int64
)

// benchController is a stargate-controller program the benchmark runs.
type benchController struct{ name, bin string }

// benchControllers are the programs to compare: STARGATE_BENCH_CONTROLLERS
// ("before=/path/a,after=/path/b") runs each in turn in the same world, for
// before/after figures taken side by side; by default the one built from
// this tree.
func benchControllers(b *testing.B) []benchController {
	v := os.Getenv("STARGATE_BENCH_CONTROLLERS")
	if v == "" {
		return []benchController{{"", env.controller}}
	}
	var out []benchController
	for _, f := range strings.Split(v, ",") {
		name, bin, ok := strings.Cut(f, "=")
		if !ok {
			b.Fatalf("STARGATE_BENCH_CONTROLLERS: %q is not name=program", f)
		}
		out = append(out, benchController{name, bin})
	}
	return out
}

// benchConcurrency lists the --max-concurrent-repaves values to run:
// STARGATE_BENCH_CONCURRENCY ("1,5"), by default 1 and the default of 5.
func benchConcurrency(b *testing.B) []int {
	v := os.Getenv("STARGATE_BENCH_CONCURRENCY")
	if v == "" {
		return []int{1, operations.NewOptions().MaxConcurrentRepaves}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			b.Fatalf("STARGATE_BENCH_CONCURRENCY: %q is not a positive number", f)
		}
		out = append(out, c)
	}
	return out
}

// BenchmarkRepave asks for the repave of N servers at once, through the
// jump host, with the controller running C of them at a time, and reports
// stargate-controller's own overhead per repave (wall time of the
// Operation minus the script's and the wait for the kubelet's TLS
// bootstrap) and its CPU time per repave, with the mean time of each step
// and of what lies between the steps (status writes, the Server's status,
// deleting the token), and the CPU the rest of the world spent per repave.
// At C=1 the overhead is the controller's own path; at higher C on a small
// machine it includes the wait for a CPU that the API servers, the sshd
// hosts and the kubelet stand-ins share with the controller.
func BenchmarkRepave(b *testing.B) {
	for _, n := range []int{20, 50} {
		for _, c := range benchConcurrency(b) {
			for _, ctl := range benchControllers(b) {
				name := fmt.Sprintf("N=%d/C=%d", n, c)
				if ctl.name != "" {
					name += "/" + ctl.name
				}
				b.Run(name, func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						benchRepave(b, ctl.bin, n, c)
					}
				})
			}
		}
	}
}

func benchRepave(b *testing.B, bin string, n, concurrency int) {
	prefix := fmt.Sprintf("b%d-%d-", n, benchRun.Add(1))
	var names []string
	for i := 0; i < n; i++ {
		w := env.sim.Workers[i%len(env.sim.Workers)]
		name := fmt.Sprintf("%s%d", prefix, i)
		env.server(b, name, w, nil)
		names = append(names, name)
	}
	// STARGATE_BENCH_CONTROLLER_ARGS adds flags, e.g. to see what one costs.
	args := append([]string{fmt.Sprintf("--max-concurrent-repaves=%d", concurrency)}, strings.Fields(os.Getenv("STARGATE_BENCH_CONTROLLER_ARGS"))...)
	ctl := env.startControllerBinary(b, bin, prefix, args...)
	time.Sleep(2 * time.Second) // let it start and sync its caches
	cpu0, err := cpuTime(ctl.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	world0 := env.worldCPU()
	start := time.Now()
	// Through the API, not kubectl: a kubectl process per repave would
	// take the CPU the measured processes need.
	cs, err := stargateclient.NewForConfig(env.world.ControlPlane.Config)
	if err != nil {
		b.Fatal(err)
	}
	var ops []string
	for _, s := range names {
		op, err := cs.StargateV1alpha1().Servers(dc).Repave(context.Background(), s, &v1.RepaveRequest{Reason: "benchmark"}, metav1.CreateOptions{})
		if err != nil {
			b.Fatalf("repave %s: %v", s, err)
		}
		ops = append(ops, op.Name)
	}
	for _, op := range ops {
		o := env.waitOp(b, op, 5*time.Minute, finished)
		if o.Status.Phase != v1.OperationSucceeded {
			b.Fatalf("%s: %s: %s", op, o.Status.Phase, o.Status.Message)
		}
	}
	total := time.Since(start)
	cpu1, _ := cpuTime(ctl.cmd.Process.Pid)
	world1 := env.worldCPU()
	env.benchCleanup(b, names)
	ctl.stop()
	log, _ := os.ReadFile(ctl.log)
	if dir := os.Getenv("STARGATE_BENCH_LOG_DIR"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, filepath.Base(ctl.log)), log, 0o644)
	}
	var writes int
	var writeTime, finishTime time.Duration
	var wall, script, nodeWait, overhead, inSteps, sessionStart time.Duration
	withPhases := 0
	stepTotal := map[string]time.Duration{}
	count := 0
	d := func(s string) time.Duration { v, _ := time.ParseDuration(s); return v }
	for i, m := range finishedLine.FindAllStringSubmatch(string(log), -1) {
		if i < 2 {
			b.Log(m[0])
		}
		wall += d(m[1])
		script += d(m[2])
		nodeWait += d(m[3])
		overhead += d(m[4])
		var steps []string
		if m[5] != "" {
			if err := json.Unmarshal([]byte(m[5]), &steps); err != nil {
				b.Fatalf("steps %s: %v", m[5], err)
			}
		}
		for j := 0; j+1 < len(steps); j += 2 {
			stepTotal[steps[j]] += d(steps[j+1])
			inSteps += d(steps[j+1])
		}
		var phases []string
		if m[6] != "" {
			if err := json.Unmarshal([]byte(m[6]), &phases); err != nil {
				b.Fatalf("scriptStep %s: %v", m[6], err)
			}
		}
		ph := map[string]time.Duration{}
		for j := 0; j+1 < len(phases); j += 2 {
			ph[phases[j]] = d(phases[j+1])
		}
		if w := writesField.FindStringSubmatch(m[0]); w != nil {
			n, _ := strconv.Atoi(w[1])
			writes += n
			writeTime += d(w[2])
			finishTime += d(w[3])
		}
		if ph["firstOutput"] > 0 {
			sessionStart += ph["firstOutput"] - ph["payload"]
			withPhases++
		}
		count++
	}
	if count != n {
		b.Fatalf("controller logged %d finished repaves, want %d", count, n)
	}
	per := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 / float64(n) }
	b.ReportMetric(per(overhead), "overhead-ms/repave")
	b.ReportMetric(per(overhead+nodeWait), "overhead+nodewait-ms/repave")
	b.ReportMetric(per(wall), "wall-ms/repave")
	b.ReportMetric(per(script), "script-ms/repave")
	b.ReportMetric(per(cpu1-cpu0), "cpu-ms/repave")
	part := func(names ...string) (d time.Duration) {
		for _, n := range names {
			d += world1[n] - world0[n]
		}
		return d
	}
	b.ReportMetric(per(part("kube-apiserver", "etcd", "stargate-apiserver", "kube-controller-manager")), "api-cpu-ms/repave")
	for _, n := range []string{"kube-apiserver", "etcd", "stargate-apiserver", "kube-controller-manager", "kubelet-standin"} {
		b.ReportMetric(per(part(n)), n+"-cpu-ms/repave")
	}
	b.ReportMetric(per(part("sshd")), "sshd-cpu-ms/repave")
	b.ReportMetric(total.Seconds(), "batch-s")
	// Where the overhead goes: each step's own time (the script step
	// without the script), and the time outside the steps.
	if len(stepTotal) > 0 {
		b.ReportMetric(per(stepTotal[operations.StepResolve]), "resolve-ms")
		b.ReportMetric(per(stepTotal[operations.StepConnect]), "connect-ms")
		b.ReportMetric(per(stepTotal[operations.StepToken]), "token-ms")
		b.ReportMetric(per(stepTotal[operations.StepStaleNode]), "stalenode-ms")
		b.ReportMetric(per(stepTotal[operations.StepScript]-script), "script-step-minus-script-ms")
		b.ReportMetric(per(wall-inSteps), "between-steps-ms")
	}
	// From sending the command until the script's first line: sshd's
	// session, the login shell, the runner (controllers that log it).
	if withPhases > 0 {
		b.ReportMetric(float64(sessionStart.Microseconds())/1000/float64(withPhases), "session-start-ms")
	}
	if writes > 0 {
		b.ReportMetric(float64(writes)/float64(n), "status-writes/repave")
		b.ReportMetric(per(writeTime), "status-write-ms")
		b.ReportMetric(per(finishTime), "finish-ms")
	}
}

// benchCleanup stops the kubelet stand-ins of a batch and deletes its
// Servers and Nodes, so batches do not pile load on the next.
func (e *testEnv) benchCleanup(b *testing.B, names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, name := range names {
		if pid, err := os.ReadFile(filepath.Join(e.stateDir, name, "pid")); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(pid))); err == nil && p > 1 {
				_ = syscall.Kill(p, syscall.SIGTERM)
			}
		}
		_ = e.c.Delete(ctx, &v1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: dc, Name: name}})
		_ = e.c.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
	}
	// The running controller removes its finalizers.
	for _, name := range names {
		for {
			err := e.c.Get(ctx, client.ObjectKey{Namespace: dc, Name: name}, &v1.Server{})
			if apierrors.IsNotFound(err) {
				break
			}
			if ctx.Err() != nil {
				b.Logf("Server %s not deleted: %v", name, err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
