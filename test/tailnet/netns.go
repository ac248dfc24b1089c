package tailnet

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ipCmd runs ip(8) with args and returns its error with its output.
func ipCmd(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipIn runs ip(8) inside network namespace ns.
func ipIn(ns string, args ...string) error {
	return ipCmd(append([]string{"-n", ns}, args...)...)
}

// sysctlIn writes a sysctl of network namespace ns (net.* sysctls are per
// namespace, so the write goes through a thread inside it).
func sysctlIn(ns, name, value string) error {
	return inNetNS(ns, func() error {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", name, value, ns, err)
		}
		return nil
	})
}

// addNetNS creates network namespace ns with its loopback up.
func addNetNS(ns string) error {
	if err := ipCmd("netns", "add", ns); err != nil {
		return err
	}
	return ipIn(ns, "link", "set", "lo", "up")
}

// delNetNS deletes network namespace ns; gone already is fine.
func delNetNS(ns string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); os.IsNotExist(err) {
		return nil
	}
	return ipCmd("netns", "delete", ns)
}

// inNetNS runs fn on a thread switched into network namespace ns. Sockets
// fn opens stay in ns after the thread switches back.
func inNetNS(ns string, fn func() error) error {
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
		// Left locked: the runtime ends this thread with the goroutine.
		return fmt.Errorf("leave network namespace %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return ferr
}
