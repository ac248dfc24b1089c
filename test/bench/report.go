package bench

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

// Aims of the issue, as ratios of time per operation, aggregated/CRD.
var aims = map[string]struct {
	max  float64
	text string
}{
	PhaseCreate: {1.25, "≤ 1.25"},
	PhaseGet:    {1.25, "≤ 1.25"},
	PhaseList:   {0.5, "≤ 0.50 (2x faster, with protobuf)"},
}

// Print writes the report as Markdown: the setup, which content types each
// side offers, the summary of ratios, the details per side, and where the
// time goes.
func (r *Report) Print(w io.Writer) {
	o := r.Options
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## Setup\n\n")
	p("- kube-apiserver %s (envtest, aggregation on); stargate-apiserver with %s etcd\n", r.KubeVersion, map[string]string{
		"embedded": "its embedded", "shared": "the kube-apiserver's"}[o.StargateEtcd])
	p("- %d Servers per side, %d requests in flight, %d rounds (side order rotated each round), %d get passes, %d full lists (no limit, so no chunking on either side)\n",
		o.N, o.Concurrency, o.Rounds, o.GetPasses, o.Lists)
	p("- status subresource filled (4 conditions, 4 route layers): %v; client QPS/Burst 1e6 (no client throttling); %d CPUs, GOMAXPROCS %d; took %s\n\n",
		o.Status, runtime.NumCPU(), runtime.GOMAXPROCS(0), r.Took.Round(time.Second))

	p("## Content types\n\n| side | via | media type | offered | probe (GET accepting only that type) |\n|---|---|---|---|---|\n")
	for _, s := range r.Sides {
		for _, mt := range o.ContentTypes {
			p("| %s | %s | %s | %s | %s |\n", s.Name, s.Via, shortName(mt), yesNo(s.Offered[mt]), s.Probe[mt])
		}
	}
	p("\n")

	p("## Objects\n\n| side | JSON bytes of one Server | managedFields entries |\n|---|---|---|\n")
	for _, s := range r.Sides {
		p("| %s | %d | %d |\n", s.Name, s.ObjectBytes, s.ManagedFields)
	}
	p("\n")
	if agg, crd := r.side(SideAggregated), r.side(SideCRD); agg != nil && crd != nil && agg.ManagedFields == 0 && crd.ManagedFields > 0 {
		p("**Warning:** stargate-apiserver recorded no managedFields (server-side apply field ownership), the CRD did: the aggregated objects are %.0f%% of the CRD's size and its writes skip the field manager's work, which flatters the aggregated side. See its log for \"failed to update managedFields\".\n\n",
			100*float64(agg.ObjectBytes)/float64(crd.ObjectBytes))
	}

	p("## Summary (aggregated vs CRD)\n\n")
	p("Ratio = aggregated time per operation / CRD time per operation (below 1: aggregated is faster). CPU ratio = the same for the CPU time of all processes of the world per operation, which other load on the machine skews less.\n\n")
	p("| phase | content type | aggregated ops/s | CRD ops/s | ratio (wall) | ratio (CPU) | aim | met (wall / CPU) |\n|---|---|---|---|---|---|---|---|\n")
	for _, phase := range []string{PhaseCreate, PhaseStatus, PhaseGet, PhaseList} {
		for _, mt := range o.ContentTypes {
			r.summaryRow(p, phase, mt)
		}
	}
	p("\n")

	p("## Details\n\n")
	p("Latency is per request at the phase's concurrency (a whole list for lists). CPU is per operation, in ms, from /proc: the world's processes, and the rest of the machine meanwhile.\n\n")
	p("| phase | side | type | ops | wall s | ops/s | p50 ms | p99 ms | KB/op | kube-apiserver | etcd | stargate | client | others |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, res := range r.Results {
		p("| %s | %s | %s | %d | %.2f | %.1f | %s | %s | %.1f | %s | %s | %s | %s | %s |\n",
			res.Phase, res.Side, shortName(res.MediaType), res.Ops, res.Wall.Seconds(), res.OpsPerSec(),
			ms(res.Quantile(0.5)), ms(res.Quantile(0.99)), float64(res.Bytes)/float64(res.Ops)/1024,
			ms(res.CPUPerOp(procKubeAPIServer)), ms(res.CPUPerOp(procEtcd)), ms(res.CPUPerOp(procStargate)),
			ms(res.CPUPerOp(procBench)), ms(res.CPU.Others/time.Duration(res.Ops)))
	}
	p("\n")
	r.printWhere(p)
}

func (r *Report) summaryRow(p func(string, ...any), phase, mt string) {
	json := MediaType("json")
	var agg, crd *Result
	label := shortName(mt)
	switch {
	case phase == PhaseCreate || phase == PhaseStatus:
		// Writes run once, in the type each side writes in.
		if mt != json {
			return
		}
		agg, crd = r.firstResult(phase, SideAggregated), r.firstResult(phase, SideCRD)
		if agg == nil || crd == nil {
			return
		}
		label = "body " + shortName(agg.MediaType) + " / " + shortName(crd.MediaType)
	default:
		agg, crd = r.Result(phase, SideAggregated, mt), r.Result(phase, SideCRD, mt)
		if crd == nil {
			// CRDs answer in JSON (YAML, and CBOR where enabled), never in
			// protobuf: their clients get JSON, so compare with that.
			crd = r.Result(phase, SideCRD, json)
			label += " (CRD: json)"
		}
	}
	aim, hasAim := aims[phase]
	aimText := "—"
	if hasAim && (phase != PhaseList || mt != json) {
		aimText = aim.text
	}
	if agg == nil {
		met := "—"
		if aimText != "—" {
			met = "no: not offered"
		}
		p("| %s | %s | not offered by stargate.io | %s | — | — | %s | %s |\n", phase, label, opsPerSec(crd), aimText, met)
		return
	}
	if crd == nil {
		return
	}
	ratio := agg.PerOp().Seconds() / crd.PerOp().Seconds()
	cpuRatio := agg.CPUPerOp("").Seconds() / crd.CPUPerOp("").Seconds()
	met := "—"
	if aimText != "—" {
		met = yesNo(ratio <= aim.max) + " / " + yesNo(cpuRatio <= aim.max)
	}
	p("| %s | %s | %.1f | %.1f | %.2f | %.2f | %s | %s |\n", phase, label, agg.OpsPerSec(), crd.OpsPerSec(), ratio, cpuRatio, aimText, met)
}

func opsPerSec(r *Result) string {
	if r == nil {
		return "—"
	}
	return fmt.Sprintf("%.1f (json)", r.OpsPerSec())
}

func (r *Report) side(name string) *Side {
	for _, s := range r.Sides {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (r *Report) firstResult(phase, side string) *Result {
	for _, res := range r.Results {
		if res.Phase == phase && res.Side == side {
			return res
		}
	}
	return nil
}

// printWhere splits the aggregated path's time into the proxy hop in
// kube-apiserver and stargate-apiserver's own work, using the direct side.
func (r *Report) printWhere(p func(string, ...any)) {
	p("## Where the time goes\n\n")
	p("Per operation. \"hop\" is aggregated minus direct: what the aggregator's proxy adds (kube-apiserver's authentication, authorization, proxying, and a second TLS connection). CPU in ms per operation; with embedded etcd, stargate-apiserver's figure includes its etcd.\n\n")
	p("| phase | type (aggregated / CRD) | CRD wall ms | aggregated wall ms | direct wall ms | hop wall ms | CRD CPU (kube-apiserver + etcd) | aggregated CPU (kube-apiserver + stargate + etcd) | direct CPU (kube-apiserver + stargate + etcd) |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, agg := range r.Results {
		if agg.Side != SideAggregated {
			continue
		}
		crd := r.Result(agg.Phase, SideCRD, agg.MediaType)
		if crd == nil && (agg.Phase == PhaseCreate || agg.Phase == PhaseStatus) {
			crd = r.firstResult(agg.Phase, SideCRD)
		}
		if crd == nil {
			crd = r.Result(agg.Phase, SideCRD, MediaType("json"))
		}
		if crd == nil {
			continue
		}
		dirWall, hop, dirCPU := "—", "—", "—"
		if dir := r.Result(agg.Phase, SideDirect, agg.MediaType); dir != nil {
			dirWall = ms(dir.PerOp())
			hop = ms(agg.PerOp() - dir.PerOp())
			dirCPU = cpuSplit(dir)
		}
		p("| %s | %s / %s | %s | %s | %s | %s | %s | %s | %s |\n", agg.Phase, shortName(agg.MediaType), shortName(crd.MediaType),
			ms(crd.PerOp()), ms(agg.PerOp()), dirWall, hop, cpuSplit(crd), cpuSplit(agg), dirCPU)
	}
	p("\n")
}

func cpuSplit(r *Result) string {
	parts := []string{ms(r.CPUPerOp(procKubeAPIServer))}
	if r.Side != SideCRD {
		parts = append(parts, ms(r.CPUPerOp(procStargate)))
	}
	parts = append(parts, ms(r.CPUPerOp(procEtcd)))
	return fmt.Sprintf("%s = %s", ms(r.CPUPerOp(procKubeAPIServer)+r.CPUPerOp(procStargate)+r.CPUPerOp(procEtcd)), strings.Join(parts, " + "))
}

func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10 || v <= -10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
