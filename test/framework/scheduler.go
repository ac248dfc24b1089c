package framework

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Scheduler is a running kube-scheduler.
type Scheduler struct {
	cmd  *exec.Cmd
	Log  string
	done chan error
}

// StartScheduler runs bin/kube-scheduler against the control plane as the
// user system:kube-scheduler, whose bootstrap ClusterRoles
// (system:kube-scheduler, system:volume-scheduler) are what a real one has;
// leader election and the serving port are off. The stand-in kubelets need
// none (their pods are bound by the tests); real nodes do.
func (cp *ControlPlane) StartScheduler(ctx context.Context) (*Scheduler, error) {
	bin := filepath.Join(cp.Binaries.Dir, "kube-scheduler")
	if err := isExecutable(bin); err != nil {
		return nil, fmt.Errorf("kube-scheduler missing; run hack/install-node-bins.sh: %w", err)
	}
	dir := filepath.Join(cp.Dir, "kube-scheduler")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	user, err := cp.AddUser("system:kube-scheduler")
	if err != nil {
		return nil, err
	}
	s := &Scheduler{Log: filepath.Join(dir, "kube-scheduler.log"), done: make(chan error, 1)}
	logFile, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin,
		"--kubeconfig="+user.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--v=2",
	)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	go func() { s.done <- s.cmd.Wait(); logFile.Close() }()
	// It has no port to probe: it works once it stays up past its start.
	select {
	case err := <-s.done:
		s.done <- err
		return nil, fmt.Errorf("kube-scheduler exited (%v):\n%s", err, tail(s.Log, 30))
	case <-ctx.Done():
		_ = s.Stop()
		return nil, ctx.Err()
	case <-time.After(time.Second):
	}
	return s, nil
}

// Stop ends kube-scheduler.
func (s *Scheduler) Stop() error {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	StopProcess(s.cmd.Process, s.done, syscall.SIGTERM, 10*time.Second)
	return nil
}
