package twin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/stargate-k8s/stargate/test/netns"
)

// ipSteps runs netns.IP(8) steps, each {namespace, args...}, stopping at the
// first error.
func ipSteps(steps ...[]string) error {
	for _, s := range steps {
		if err := netns.In(s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// sysctlIn writes net sysctls (name=value) in namespace ns.
func sysctlIn(ns string, kv ...string) error {
	for _, s := range kv {
		name, value, _ := strings.Cut(s, "=")
		if err := netns.Sysctl(ns, name, value); err != nil {
			return err
		}
	}
	return nil
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
		errs = append(errs, netns.In(ns, "route", "replace", p, "via", nh, "proto", proto))
	}
	for p := range have {
		if _, ok := want[p]; !ok {
			errs = append(errs, netns.In(ns, "route", "del", p, "proto", proto))
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
