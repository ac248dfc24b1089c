package nodes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stargate-k8s/stargate/test/framework"
)

// process is a daemon of a node: containerd, kubelet or kube-proxy.
type process struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed
}

// start runs bin in the node's network namespace (nsenter --net) and in
// its daemons cgroup, which a shell joins before it execs nsenter, so that
// the daemon and every process it forks are in it from the first
// instruction on; the log goes to the node's directory.
func (n *Node) start(name string, env []string, bin string, args ...string) (*process, error) {
	p := &process{name: name, log: filepath.Join(n.Dir, name+".log"), done: make(chan struct{})}
	logFile, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	procs := filepath.Join(cgroupMount, "pids", cgroupName(n.Name)+".daemons", "cgroup.procs")
	script := `echo $$ > "$1" && ns=$2 && shift 2 && exec nsenter --net="$ns" -- "$@"`
	full := append([]string{"-c", script, "sh", procs, filepath.Join(netnsDir, n.NetNS), bin}, args...)
	p.cmd = exec.Command("/bin/sh", full...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	// Its own process group: a ^C of the test does not reach it first.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	n.procs = append(n.procs, p)
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and, after grace, SIGKILL.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	framework.StopProcess(p.cmd.Process, p.done, syscall.SIGTERM, grace)
}

// waitSocket waits until a unix socket accepts connections.
func waitSocket(ctx context.Context, p *process, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, tailFile(p.log, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no socket %s within %s:\n%s", p.name, path, timeout, tailFile(p.log, 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func unmount(path string) error {
	if err := syscall.Unmount(path, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}

// tailFile is the last n lines of a file.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(func() []string {
		s := make([]string, len(lines))
		for i, l := range lines {
			s[i] = string(l)
		}
		return s
	}(), "\n")
}
