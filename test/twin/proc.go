package twin

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/stargate-k8s/stargate/test/framework"
)

// Process is a program run in a namespace, stopped by its PID.
type Process struct {
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startProcess(ns, logPath string, env []string, bin string, args ...string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	if ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s in %s: %w", filepath.Base(bin), ns, err)
	}
	p := &Process{Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// Exited says whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and SIGKILL after 15 s.
func (p *Process) Stop() error {
	if p.Exited() {
		return nil
	}
	if !framework.StopProcess(p.cmd.Process, p.done, syscall.SIGTERM, 15*time.Second) {
		return nil
	}
	return fmt.Errorf("%s did not stop on SIGTERM within 15s and was killed", filepath.Base(p.Log))
}

// prefixAddr is the address of prefix p, or the zero address.
func prefixAddr(p string) netip.Addr {
	pp, err := netip.ParsePrefix(p)
	if err != nil {
		return netip.Addr{}
	}
	return pp.Addr()
}
