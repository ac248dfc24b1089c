package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Kubectl runs the real kubectl binary as one user.
type Kubectl struct {
	Path       string
	Kubeconfig string
	// CacheDir keeps kubectl's discovery cache away from the user's
	// ~/.kube/cache, so a stale cache of an earlier run never answers.
	CacheDir string
}

// Result is what one kubectl run printed and how it ended.
type Result struct {
	Args     []string
	Stdout   string
	Stderr   string
	ExitCode int
	Err      error
}

// String shows the command and its output, for failure messages.
func (r Result) String() string {
	return fmt.Sprintf("kubectl %s (exit %d, err %v)\n--- stdout:\n%s--- stderr:\n%s",
		strings.Join(r.Args, " "), r.ExitCode, r.Err, r.Stdout, r.Stderr)
}

// Run runs kubectl with args and returns its output; a non-zero exit is
// reported in Result.Err and Result.ExitCode, not as a Go error, because
// tests often expect kubectl to fail.
func (k Kubectl) Run(ctx context.Context, args ...string) Result {
	return k.RunWithInput(ctx, "", args...)
}

// RunWithInput is Run with stdin (for `-f -`).
func (k Kubectl) RunWithInput(ctx context.Context, stdin string, args ...string) Result {
	var stdout, stderr bytes.Buffer
	cmd := k.command(ctx, args)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Args: args, Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		r.ExitCode = exit.ExitCode()
	} else if err != nil {
		r.ExitCode = -1
	}
	return r
}

func (k Kubectl) command(ctx context.Context, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, k.Path, append([]string{"--kubeconfig=" + k.Kubeconfig}, args...)...)
	cmd.Env = os.Environ()
	if k.CacheDir != "" {
		cmd.Env = append(cmd.Env, "KUBECACHEDIR="+k.CacheDir)
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Stream is a kubectl process left running, such as `kubectl get -w`.
type Stream struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
}

// Start runs kubectl in the background; Stop ends it.
func (k Kubectl) Start(ctx context.Context, args ...string) (*Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	cmd := k.command(ctx, args)
	s := &Stream{cmd: cmd, cancel: cancel, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start kubectl %s: %w", strings.Join(args, " "), err)
	}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// Stdout is everything printed so far.
func (s *Stream) Stdout() string { return s.stdout.String() }

// Stderr is everything printed so far on stderr.
func (s *Stream) Stderr() string { return s.stderr.String() }

// WaitFor polls the output until match accepts it, the process exits or
// the timeout passes.
func (s *Stream) WaitFor(timeout time.Duration, match func(stdout string) bool) error {
	deadline := time.After(timeout)
	for {
		if match(s.Stdout()) {
			return nil
		}
		select {
		case <-s.done:
			if match(s.Stdout()) {
				return nil
			}
			return fmt.Errorf("kubectl exited before the expected output\n--- stdout:\n%s--- stderr:\n%s", s.Stdout(), s.Stderr())
		case <-deadline:
			return fmt.Errorf("expected output not seen within %s\n--- stdout:\n%s--- stderr:\n%s", timeout, s.Stdout(), s.Stderr())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop kills the process and waits for it.
func (s *Stream) Stop() {
	s.cancel()
	<-s.done
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ io.Writer = (*syncBuffer)(nil)
