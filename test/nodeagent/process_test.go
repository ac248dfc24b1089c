package nodeagent_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/test/framework"
)

// TestAgentProcessRSS runs the stargate-nodeagent binary as the DaemonSet
// does (GOMEMLIMIT included), checking every 100ms (300 times its default
// rate) a worker namespace whose main table holds 10 routes (the baseline)
// and then 1,000, and measures the process: resident memory, CPU, check
// passes and status writes.
func TestAgentProcessRSS(t *testing.T) {
	requireRoot(t)
	w := getWorld(t)
	bin := buildAgent(t, w)
	var base *procFigures
	for _, n := range []int{10, 1000} {
		t.Run(fmt.Sprintf("routes=%d", n), func(t *testing.T) {
			tn := newTableOf(t, n)
			l := tn.ListenOnTarget(t)
			f := newNodeFixture(t, w, podCIDR, podCIDR)
			got := runAgentProcess(t, w, bin, tn, f, l.Addr().String(), 10*time.Second)
			t.Logf("routes=%d: RSS max %.1f MiB (VmHWM %.1f MiB; at the end %.1f MiB anonymous, %.1f MiB file-backed), CPU %.2f%% of one core, %d passes (%.2f ms CPU each), mean pass %.3f ms, %d status writes in %s after the first report",
				n, mib(got.maxRSS), mib(got.hwm), mib(got.anon), mib(got.file), got.cpuShare*100, got.passes, got.cpuPerPass.Seconds()*1000, got.meanPass.Seconds()*1000, got.writes, got.window)
			if base == nil {
				base = got
			} else {
				t.Logf("routes=%d vs routes=10: RSS x%.2f, CPU per pass x%.2f, mean pass x%.2f",
					n, float64(got.maxRSS)/float64(base.maxRSS), got.cpuPerPass.Seconds()/base.cpuPerPass.Seconds(), got.meanPass.Seconds()/base.meanPass.Seconds())
			}
			if got.maxRSS >= 30<<20 {
				t.Errorf("RSS %.1f MiB, want under 30 MiB", mib(got.maxRSS))
			}
			if got.writes != 0 {
				t.Errorf("%d status writes while nothing changed (heartbeat 1m), want 0", got.writes)
			}
			if got.passes < 30 {
				t.Errorf("only %d check passes in %s at a 100ms interval", got.passes, got.window)
			}
		})
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// buildAgent builds ./cmd/nodeagent into the test's temporary directory.
func buildAgent(t *testing.T, w *framework.World) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stargate-nodeagent")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/nodeagent")
	cmd.Dir = w.RepoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/nodeagent: %v\n%s", err, out)
	}
	return bin
}

type procFigures struct {
	maxRSS, hwm int64
	// anon is heap, stacks and runtime; file is the binary's mapped pages.
	anon, file int64
	cpuShare   float64
	cpuPerPass time.Duration
	meanPass   time.Duration
	passes     int
	writes     int
	window     time.Duration
}

func runAgentProcess(t *testing.T, w *framework.World, bin string, tn *testNet, f *nodeFixture, probe string, window time.Duration) *procFigures {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "agent.kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: agent
  user:
    token: %s
contexts:
- name: agent
  context: {cluster: test, user: agent}
current-context: agent
`, w.ControlPlane.Config.Host, base64.StdEncoding.EncodeToString(w.ControlPlane.Config.CAData), f.Token)
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	listen, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listen.Addr().String()
	listen.Close()

	logFile := filepath.Join(t.TempDir(), "agent.log")
	logOut, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logOut.Close()
	cmd := exec.Command(bin,
		"--kubeconfig="+kubeconfig, "--node-name="+f.Node, "--netns="+tn.Name,
		"--remote-cidrs="+aksPodCIDR+","+aksSvcCIDR, "--next-hop-gateway="+routerIP, "--pod-cidr-device="+podDevice,
		"--probe-target="+probe, "--interval=100ms", "--heartbeat=1m", "--listen-address="+addr)
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=24MiB")
	cmd.Stdout, cmd.Stderr = logOut, logOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer framework.StopProcess(cmd.Process, exited, syscall.SIGTERM, 10*time.Second)
	logTail := func() string { b, _ := os.ReadFile(logFile); return string(b) }

	base := "http://" + addr
	deadline := time.Now().Add(time.Minute)
	for {
		if code, _ := httpGet(base + "/readyz"); code == http.StatusOK {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("agent exited: %v\n%s", err, logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready within a minute\n%s", logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, f, 30*time.Second, "the agent's first report", func(st serverState) bool {
		return is(st.Routes, metav1.ConditionTrue, stargate.ReasonRoutesHealthy) && is(st.Cilium, metav1.ConditionTrue, "")
	})
	time.Sleep(time.Second) // the pass its own write triggers
	if code, body := httpGet(base + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}

	m0 := scrape(t, base)
	cpu0 := procCPU(t, cmd.Process.Pid)
	start := time.Now()
	var maxRSS int64
	for time.Since(start) < window {
		if rss := procStatus(t, cmd.Process.Pid, "VmRSS"); rss > maxRSS {
			maxRSS = rss
		}
		time.Sleep(250 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu := procCPU(t, cmd.Process.Pid) - cpu0
	m1 := scrape(t, base)
	passes := int(m1["stargate_nodeagent_checks_total"] - m0["stargate_nodeagent_checks_total"])
	fig := &procFigures{
		maxRSS:   maxRSS,
		hwm:      procStatus(t, cmd.Process.Pid, "VmHWM"),
		anon:     procStatus(t, cmd.Process.Pid, "RssAnon"),
		file:     procStatus(t, cmd.Process.Pid, "RssFile"),
		cpuShare: cpu.Seconds() / elapsed.Seconds(),
		passes:   passes,
		writes:   int(m1["stargate_nodeagent_status_writes_total"] - m0["stargate_nodeagent_status_writes_total"]),
		window:   elapsed.Round(time.Second),
	}
	if passes > 0 {
		fig.cpuPerPass = cpu / time.Duration(passes)
		dSum := m1["stargate_nodeagent_check_duration_seconds_sum"] - m0["stargate_nodeagent_check_duration_seconds_sum"]
		fig.meanPass = time.Duration(dSum / float64(passes) * float64(time.Second))
	}
	return fig
}

func httpGet(url string) (int, string) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape sums each metric family of the agent's /metrics over its labels.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	code, body := httpGet(base + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err == nil {
			out[name] += v
		}
	}
	return out
}

// procStatus reads a "kB" field of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", field, line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// procCPU is the user and system time of a process.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command (which may hold spaces) start at ") ".
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}
