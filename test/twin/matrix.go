package twin

import (
	"fmt"
	"sort"
	"strings"
)

// The shapes of Goldpinger's /check and /check_all (its swagger's
// CheckResults and CheckAllResults), so one connectivity checker reads
// this twin and a real Goldpinger alike. ICMP and TCP are this twin's
// additions to a pod result (Goldpinger pings over HTTP); OK is both.

// CheckAllResults is /check_all: every pod's /check.
type CheckAllResults struct {
	Hosts     []HostInfo                   `json:"hosts"`
	Responses map[string]CheckAllPodResult `json:"responses"`
}

// HostInfo names one pod.
type HostInfo struct {
	HostIP  string `json:"hostIP"`
	PodIP   string `json:"podIP"`
	PodName string `json:"podName"`
}

// CheckAllPodResult is one pod's answer to /check, or why there is none.
type CheckAllPodResult struct {
	HostIP   string        `json:"HostIP"`
	PodIP    string        `json:"PodIP"`
	OK       bool          `json:"OK"`
	Error    string        `json:"error,omitempty"`
	Response *CheckResults `json:"response,omitempty"`
}

// CheckResults is /check: this pod's results for every other pod.
type CheckResults struct {
	PodResults map[string]PodResult `json:"podResults"`
}

// PodResult is one probe of another pod.
type PodResult struct {
	HostIP         string `json:"HostIP"`
	PodIP          string `json:"PodIP"`
	OK             bool   `json:"OK"`
	Error          string `json:"error,omitempty"`
	ResponseTimeMs int64  `json:"response-time-ms"`
	StatusCode     int32  `json:"status-code"`
	ICMP           bool   `json:"icmp"`
	TCP            bool   `json:"tcp"`
}

// Pair is a source and destination pod.
type Pair struct{ From, To string }

func (p Pair) String() string { return p.From + "->" + p.To }

// Failed lists the pairs whose probe failed (or whose source pod did not
// answer), sorted.
func (c CheckAllResults) Failed() []Pair {
	var out []Pair
	for from, r := range c.Responses {
		if !r.OK || r.Response == nil {
			for _, h := range c.Hosts {
				if h.PodName != from {
					out = append(out, Pair{from, h.PodName})
				}
			}
			continue
		}
		for to, pr := range r.Response.PodResults {
			if !pr.OK {
				out = append(out, Pair{from, to})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Green says whether every pod reached every other.
func (c CheckAllResults) Green() bool {
	if len(c.Responses) != len(c.Hosts) {
		return false
	}
	for _, r := range c.Responses {
		if !r.OK || r.Response == nil || len(r.Response.PodResults) != len(c.Hosts)-1 {
			return false
		}
	}
	return len(c.Failed()) == 0
}

// Summary counts, per ordered pair of sites (site of a pod is given by
// siteOf), the pairs that passed out of all: "aks->dc1 2/2".
func (c CheckAllResults) Summary(siteOf func(pod string) string) string {
	type count struct{ ok, all int }
	m := map[string]*count{}
	add := func(from, to string, ok bool) {
		k := siteOf(from) + "->" + siteOf(to)
		if m[k] == nil {
			m[k] = &count{}
		}
		m[k].all++
		if ok {
			m[k].ok++
		}
	}
	failed := map[Pair]bool{}
	for _, p := range c.Failed() {
		failed[p] = true
	}
	for _, a := range c.Hosts {
		for _, b := range c.Hosts {
			if a.PodName != b.PodName {
				add(a.PodName, b.PodName, !failed[Pair{a.PodName, b.PodName}])
			}
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %d/%d  ", k, m[k].ok, m[k].all)
	}
	return strings.TrimSpace(b.String())
}
