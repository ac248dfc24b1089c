package repave

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// cpuTime is the user+system CPU time of a process so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

var finishedLine = regexp.MustCompile(`"repave finished".*wall="([^"]+)" script="([^"]+)" nodeWait="([^"]+)" overhead="([^"]+)".*`)

// BenchmarkRepave repaves N servers at once (concurrency 10) through the
// jump host and reports stargate-controller's own overhead per repave
// (wall time of the Operation minus the script's and the wait for the
// kubelet's TLS bootstrap) and its CPU time per repave.
func BenchmarkRepave(b *testing.B) {
	for _, n := range []int{20, 50} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchRepave(b, n, i)
			}
		})
	}
}

func benchRepave(b *testing.B, n, round int) {
	prefix := fmt.Sprintf("b%d-%d-", n, round)
	var names []string
	for i := 0; i < n; i++ {
		w := env.sim.Workers[i%len(env.sim.Workers)]
		name := fmt.Sprintf("%s%d", prefix, i)
		env.server(b, name, w, nil)
		names = append(names, name)
	}
	ctl := env.startController(b, prefix, "--max-concurrent-repaves=10")
	time.Sleep(2 * time.Second) // let it start and sync its caches
	cpu0, err := cpuTime(ctl.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var ops []string
	for _, s := range names {
		ops = append(ops, env.repave(b, s, ""))
	}
	for _, op := range ops {
		o := env.waitOp(b, op, 5*time.Minute, finished)
		if o.Status.Phase != v1.OperationSucceeded {
			b.Fatalf("%s: %s: %s", op, o.Status.Phase, o.Status.Message)
		}
	}
	total := time.Since(start)
	cpu1, _ := cpuTime(ctl.cmd.Process.Pid)
	ctl.stop()
	log, _ := os.ReadFile(ctl.log)
	var wall, script, nodeWait, overhead time.Duration
	count := 0
	for i, m := range finishedLine.FindAllStringSubmatch(string(log), -1) {
		if i < 2 {
			b.Log(m[0])
		}
		d := func(s string) time.Duration { v, _ := time.ParseDuration(s); return v }
		wall += d(m[1])
		script += d(m[2])
		nodeWait += d(m[3])
		overhead += d(m[4])
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
	b.ReportMetric(total.Seconds(), "batch-s")
}
