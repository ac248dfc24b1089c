package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Where the CPU of a profiled pass went, by the stack of each sample.
const (
	partReconciler = "reconciler"
	partKube       = "fake Kubernetes client"
	partAzure      = "fake Azure"
	partTailscale  = "fake Tailscale (server side)"
	partGC         = "GC (background workers)"
	partOther      = "other (runtime, HTTP client loops, bench)"
)

var parts = []string{partReconciler, partKube, partAzure, partTailscale, partGC, partOther}

// classify names the part a sample's stack (function names, innermost
// first) belongs to.
func classify(stack []string) string {
	has := func(subs ...string) bool {
		for _, f := range stack {
			for _, s := range subs {
				if strings.Contains(f, s) {
					return true
				}
			}
		}
		return false
	}
	switch {
	case has("runtime.gcBgMarkWorker"):
		return partGC
	case has("main.cpu"):
		return partOther // getrusage of the bench's meter
	case has("controller-runtime/pkg/client/fake.", "k8s.io/client-go/testing."):
		return partKube
	case has("/azurefake.", "armnetwork/v7/fake.", "azcore/fake."):
		return partAzure
	case has("/tailscalefake.", "net/http.(*conn).serve", "net/http/httptest."):
		return partTailscale
	case has("routes.(*Reconciler).Pass"):
		return partReconciler
	}
	return partOther
}

// cpuSplit is a profiled pass: CPU per part as sampled, and the bytes
// allocated inside the fakes against all allocated.
type cpuSplit struct {
	parts                  map[string]time.Duration
	sampled                time.Duration
	fakeAlloc, totalAlloc  uint64
	reconcilerShareOfAlloc float64
}

// own is the reconciler's CPU: its samples plus its share of the
// background GC work, in proportion to the bytes it allocated.
func (s cpuSplit) own() time.Duration {
	return s.parts[partReconciler] + time.Duration(float64(s.parts[partGC])*s.reconcilerShareOfAlloc)
}

func (s cpuSplit) String() string {
	var out []string
	for _, p := range parts {
		out = append(out, fmt.Sprintf("%s %s (%.0f%%)", p, ms(s.parts[p]), 100*float64(s.parts[p])/float64(max(s.sampled, 1))))
	}
	return fmt.Sprintf("sampled %s: %s; allocated %.0f MB, %.1f%% of it outside the fakes", ms(s.sampled), strings.Join(out, ", "),
		float64(s.totalAlloc)/1e6, 100*s.reconcilerShareOfAlloc)
}

// allocated is the bytes the process allocated so far.
func allocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// profiler profiles one stretch of the run into memory.
type profiler struct {
	buf    bytes.Buffer
	alloc0 uint64
	fake0  uint64
	m      *meter
}

func startProfiler(m *meter) (*profiler, error) {
	p := &profiler{m: m, alloc0: allocated(), fake0: m.alloc.Load()}
	if err := pprof.StartCPUProfile(&p.buf); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *profiler) stop() (cpuSplit, []byte, error) {
	pprof.StopCPUProfile()
	s := cpuSplit{totalAlloc: allocated() - p.alloc0, fakeAlloc: p.m.alloc.Load() - p.fake0}
	if s.totalAlloc > 0 {
		s.reconcilerShareOfAlloc = float64(s.totalAlloc-min(s.fakeAlloc, s.totalAlloc)) / float64(s.totalAlloc)
	}
	var err error
	s.parts, s.sampled, err = splitProfile(p.buf.Bytes())
	return s, p.buf.Bytes(), err
}

// splitProfile reads a gzipped CPU profile (profile.proto) and sums the
// CPU of its samples per part. It reads the few fields it needs with
// protowire rather than pull in a profile library.
func splitProfile(gz []byte) (map[string]time.Duration, time.Duration, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, 0, err
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, 0, err
	}
	type sample struct {
		locs   []uint64
		values []uint64
	}
	var (
		strs        []string
		sampleTypes [][]byte
		samples     []sample
		funcName    = map[uint64]uint64{}   // function id -> string index
		locFuncs    = map[uint64][]uint64{} // location id -> function ids, innermost first
	)
	err = fields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch num {
		case 1: // sample_type
			sampleTypes = append(sampleTypes, v)
		case 2: // sample
			var s sample
			err := fields(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
				switch num {
				case 1:
					s.locs = append(s.locs, varints(typ, v, x)...)
				case 2:
					s.values = append(s.values, varints(typ, v, x)...)
				}
				return nil
			})
			samples = append(samples, s)
			return err
		case 4: // location
			var id uint64
			var fns []uint64
			err := fields(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
				switch num {
				case 1:
					id = x
				case 4: // line
					return fields(v, func(num protowire.Number, _ protowire.Type, _ []byte, x uint64) error {
						if num == 1 {
							fns = append(fns, x)
						}
						return nil
					})
				}
				return nil
			})
			locFuncs[id] = fns
			return err
		case 5: // function
			var id, name uint64
			err := fields(v, func(num protowire.Number, _ protowire.Type, _ []byte, x uint64) error {
				switch num {
				case 1:
					id = x
				case 2:
					name = x
				}
				return nil
			})
			funcName[id] = name
			return err
		case 6: // string_table
			strs = append(strs, string(v))
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	// The CPU profile's sample types are samples/count and cpu/nanoseconds.
	cpuIdx := -1
	for i, st := range sampleTypes {
		var typ uint64
		_ = fields(st, func(num protowire.Number, _ protowire.Type, _ []byte, x uint64) error {
			if num == 1 {
				typ = x
			}
			return nil
		})
		if int(typ) < len(strs) && strs[typ] == "cpu" {
			cpuIdx = i
		}
	}
	if cpuIdx < 0 {
		return nil, 0, fmt.Errorf("no cpu sample type in the profile")
	}
	out := map[string]time.Duration{}
	var total time.Duration
	for _, s := range samples {
		if cpuIdx >= len(s.values) {
			continue
		}
		var stack []string
		for _, l := range s.locs {
			for _, f := range locFuncs[l] {
				if n := funcName[f]; int(n) < len(strs) {
					stack = append(stack, strs[n])
				}
			}
		}
		d := time.Duration(s.values[cpuIdx])
		out[classify(stack)] += d
		total += d
	}
	return out, total, nil
}

// fields calls fn for every field of a protobuf message: v for
// length-delimited fields, x for varints.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.VarintType || typ == protowire.BytesType {
			if err := fn(num, typ, v, x); err != nil {
				return err
			}
		}
	}
	return nil
}

// varints is a repeated varint field: packed (bytes) or one value.
func varints(typ protowire.Type, v []byte, x uint64) []uint64 {
	if typ == protowire.VarintType {
		return []uint64{x}
	}
	var out []uint64
	for len(v) > 0 {
		y, n := protowire.ConsumeVarint(v)
		if n < 0 {
			break
		}
		out = append(out, y)
		v = v[n:]
	}
	return out
}
