package twin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ip runs ip(8) and returns its error with its output.
func ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipIn runs ip(8) in namespace ns.
func ipIn(ns string, args ...string) error { return ip(append([]string{"-n", ns}, args...)...) }

// ipSteps runs ip(8) steps, each {namespace, args...}, stopping at the
// first error.
func ipSteps(steps ...[]string) error {
	for _, s := range steps {
		if err := ipIn(s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// sysctlIn writes net sysctls (name=value) in namespace ns: /proc/sys/net
// shows the namespace of the process that reads it.
func sysctlIn(ns string, kv ...string) error {
	var script strings.Builder
	for _, s := range kv {
		name, value, _ := strings.Cut(s, "=")
		fmt.Fprintf(&script, "echo %s > /proc/sys/%s\n", value, strings.ReplaceAll(name, ".", "/"))
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-ec", script.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sysctl %v in %s: %w: %s", kv, ns, err, out)
	}
	return nil
}

// addNetNS creates namespace ns with its loopback up.
func addNetNS(ns string) error {
	if err := ip("netns", "add", ns); err != nil {
		return err
	}
	return ipIn(ns, "link", "set", "lo", "up")
}

// delNetNS deletes namespace ns; gone already is fine.
func delNetNS(ns string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); os.IsNotExist(err) {
		return nil
	}
	return ip("netns", "delete", ns)
}

// syncRoutes makes the routes of protocol proto in namespace ns exactly
// want (prefix -> next hop): replaces what differs, deletes the rest.
func syncRoutes(ns, proto string, want map[string]string) error {
	out, err := exec.Command("ip", "-n", ns, "-4", "route", "show", "proto", proto).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s route show proto %s: %w: %s", ns, proto, err, out)
	}
	have := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "via" {
			have[f[0]] = f[2]
		}
	}
	var errs []error
	for p, nh := range want {
		if have[p] == nh {
			continue
		}
		errs = append(errs, ipIn(ns, "route", "replace", p, "via", nh, "proto", proto))
	}
	for p := range have {
		if _, ok := want[p]; !ok {
			errs = append(errs, ipIn(ns, "route", "del", p, "proto", proto))
		}
	}
	return errors.Join(errs...)
}

// inPrefix says whether address a is in prefix p (both strings).
func inPrefix(p, a string) bool {
	pp, err1 := netip.ParsePrefix(p)
	aa, err2 := netip.ParseAddr(a)
	return err1 == nil && err2 == nil && pp.Contains(aa)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
