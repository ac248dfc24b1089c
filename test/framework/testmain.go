package framework

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// RunWithWorld is the body of a TestMain that shares one World among a
// package's tests: it starts the world (within five minutes), runs setup
// (clients, fixtures), then the tests, and stops the world. When start-up,
// setup or a test failed, the world's directory with its logs and
// kubeconfigs is kept, and the message says where. It returns the exit
// code for os.Exit. A nil opts.Logf reports progress on stderr.
func RunWithWorld(m *testing.M, opts WorldOptions, setup func(ctx context.Context, w *World) error) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if opts.Logf == nil {
		opts.Logf = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "%s world: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
		}
	}
	w, err := StartWorld(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the test world: %v\n", err)
		return 1
	}
	code := 1
	defer func() {
		if code != 0 {
			w.KeepDir = true
			opts.Logf("tests failed; logs and kubeconfigs kept in %s", w.Dir)
		}
		if err := w.Stop(); err != nil {
			opts.Logf("stopping: %v", err)
		}
	}()
	if setup != nil {
		if err := setup(ctx, w); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: set up the test world: %v\n", err)
			return code
		}
	}
	code = m.Run()
	return code
}
