// Package netns holds what the test worlds (test/dcsim, test/tailnet,
// test/twin) do with network namespaces: run ip(8) in one, create and
// delete one, write its sysctls, and run Go code on a thread inside one.
package netns

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// IP runs ip(8) with args and returns its error with its output.
func IP(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// In runs ip(8) inside network namespace ns.
func In(ns string, args ...string) error {
	return IP(append([]string{"-n", ns}, args...)...)
}

// Add creates network namespace ns with its loopback up.
func Add(ns string) error {
	if err := IP("netns", "add", ns); err != nil {
		return err
	}
	return In(ns, "link", "set", "lo", "up")
}

// Delete deletes network namespace ns; gone already is fine.
func Delete(ns string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); os.IsNotExist(err) {
		return nil
	}
	return IP("netns", "delete", ns)
}

// Sysctl writes a sysctl of network namespace ns (net.* sysctls are per
// namespace, so the write goes through a thread inside it).
func Sysctl(ns, name, value string) error {
	return Run(ns, func() error {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", name, value, ns, err)
		}
		return nil
	})
}

// Run runs fn on a thread switched into network namespace ns. Sockets fn
// opens stay in ns after the thread switches back, which is how the test
// worlds bridge their namespaces to the host's loopback without giving
// the host an address of its own.
func Run(ns string, fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own network namespace: %w", err)
	}
	defer self.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open network namespace %s: %w", ns, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: keep it locked so the
		// runtime discards it when this goroutine ends.
		return fmt.Errorf("leave network namespace %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Dial connects to addr over network from inside namespace ns.
func Dial(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := Run(ns, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// Listen listens on addr over network inside namespace ns.
func Listen(ns, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := Run(ns, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}
