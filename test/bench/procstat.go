package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Where the time goes is read from the kernel's CPU accounting of each
// process of the test world: on a machine with few cores the servers
// compete for CPU, so CPU time per request tells more than latency, and it
// is not skewed by other work on the machine, which is reported apart.

// clockTick is USER_HZ, the unit of /proc/PID/stat times; 100 on Linux.
const clockTick = 100

// Process labels, in table order.
const (
	procKubeAPIServer = "kube-apiserver"
	procEtcd          = "etcd"
	procStargate      = "stargate-apiserver"
	procBench         = "bench client"
)

var processOrder = []string{procKubeAPIServer, procEtcd, procStargate, procBench}

// processes maps a label to the pid of the world's processes, which are
// children of this one. comm is cut at 15 characters, hence the prefixes.
func findProcesses() (map[string]int, error) {
	procs := map[string]int{procBench: os.Getpid()}
	paths, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		st, err := readStat(p)
		if err != nil || st.ppid != os.Getpid() {
			continue
		}
		switch {
		case strings.HasPrefix(st.comm, "kube-apiserver"):
			procs[procKubeAPIServer] = st.pid
		case st.comm == "etcd":
			procs[procEtcd] = st.pid
		case strings.HasPrefix(st.comm, "stargate-apiser"):
			procs[procStargate] = st.pid
		}
	}
	for _, name := range processOrder {
		if _, ok := procs[name]; !ok {
			return procs, fmt.Errorf("no child process %s found in /proc", name)
		}
	}
	return procs, nil
}

type procStat struct {
	pid, ppid int
	comm      string
	ticks     int64 // utime + stime of all threads
}

func readStat(path string) (procStat, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, err
	}
	s := string(data)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return procStat{}, fmt.Errorf("%s: unexpected format", path)
	}
	var st procStat
	st.pid, _ = strconv.Atoi(strings.TrimSpace(s[:open]))
	st.comm = s[open+1 : close]
	f := strings.Fields(s[close+1:])
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("%s: too few fields", path)
	}
	st.ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	st.ticks = utime + stime
	return st, nil
}

// machineTicks are the busy and total CPU ticks of the whole machine.
func machineTicks() (busy, total int64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i >= 8 { // guest times are already in user and nice
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, nil
}

// cpuSnapshot is the CPU time of the world's processes and of the machine
// at one moment.
type cpuSnapshot struct {
	at          time.Time
	procs       map[string]int64
	busy, total int64
}

type cpuMeter struct{ pids map[string]int }

func (m cpuMeter) snapshot() cpuSnapshot {
	s := cpuSnapshot{at: time.Now(), procs: map[string]int64{}}
	for name, pid := range m.pids {
		if st, err := readStat(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			s.procs[name] = st.ticks
		}
	}
	s.busy, s.total, _ = machineTicks()
	return s
}

// CPU is CPU time spent between two snapshots.
type CPU struct {
	Procs map[string]time.Duration
	// Others is CPU time the rest of the machine used meanwhile.
	Others time.Duration
}

func (c *CPU) add(before, after cpuSnapshot) {
	if c.Procs == nil {
		c.Procs = map[string]time.Duration{}
	}
	var ours int64
	for name, t := range after.procs {
		d := t - before.procs[name]
		ours += d
		c.Procs[name] += ticks(d)
	}
	if others := after.busy - before.busy - ours; others > 0 {
		c.Others += ticks(others)
	}
}

func (c CPU) total() time.Duration {
	var t time.Duration
	for _, d := range c.Procs {
		t += d
	}
	return t
}

func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / clockTick }
