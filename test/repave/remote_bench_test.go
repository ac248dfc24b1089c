package repave

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stargate-k8s/stargate/pkg/bootstrap"
	"github.com/stargate-k8s/stargate/pkg/sshexec"
	"github.com/stargate-k8s/stargate/test/dcsim"
)

// BenchmarkRepaveRemote times the remote side of a repave without the
// controller and the API servers: from the cloud namespace, the SSH
// handshake with the router, the handshake with a worker through it, an
// empty session, and the runner with an empty bootstrap script (payload
// upload, start, follow, result). It runs them one at a time and ten at
// once, so the floor under the controller's overhead is known.
func BenchmarkRepaveRemote(b *testing.B) {
	for _, par := range []int{1, 10} {
		b.Run(fmt.Sprintf("parallel=%d", par), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchRemote(b, par, 20)
			}
		})
	}
}

type remoteTimes struct {
	jump, target, emptySession, firstLine, result, sessionEnd, script time.Duration
}

func benchRemote(b *testing.B, par, rounds int) {
	signer := env.sim.ClientSigner
	known, err := sshexec.KnownHosts(env.sim.KnownHosts())
	if err != nil {
		b.Fatal(err)
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return env.sim.DialContext(ctx, network, addr)
	}
	payload, err := bootstrap.Payload([]byte("#!/bin/bash\necho hello\n"), bootstrap.NodeConfig{NodeName: "probe"}, []byte("kubeconfig"), []byte("ca"))
	if err != nil {
		b.Fatal(err)
	}
	base := filepath.Join(env.dir, "probe")
	var mu sync.Mutex
	var all []remoteTimes
	var wg sync.WaitGroup
	errs := make(chan error, par)
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			h := env.sim.Workers[(w+30)%len(env.sim.Workers)]
			for r := 0; r < rounds; r++ {
				var t remoteTimes
				t0 := time.Now()
				jump, err := sshexec.Connect(context.Background(), sshexec.Config{
					User: "root", Signer: signer, Dial: dial,
					Target: sshexec.Endpoint{Addr: dcsim.RouterTailnetIP + ":22", HostKey: known},
				})
				if err != nil {
					errs <- err
					return
				}
				t.jump = time.Since(t0)
				t0 = time.Now()
				c, err := sshexec.Connect(context.Background(), sshexec.Config{
					User: "root", Signer: signer, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) { return jump.Dial(network, addr) },
					Target: sshexec.Endpoint{Addr: h.IP + ":22", HostKey: known},
				})
				if err != nil {
					errs <- err
					return
				}
				t.target = time.Since(t0)
				t0 = time.Now()
				if _, err := c.Output(context.Background(), "true"); err != nil {
					errs <- err
					return
				}
				t.emptySession = time.Since(t0)
				uid := fmt.Sprintf("w%d-r%d-%d", w, r, time.Now().UnixNano())
				dir := bootstrap.WorkDir(base, uid)
				pr, pw := io.Pipe()
				t0 = time.Now()
				done := make(chan error, 1)
				go func() {
					err := c.Run(context.Background(), bootstrap.RunCommand(dir), strings.NewReader(string(payload)), pw, pw)
					pw.CloseWithError(err)
					done <- err
				}()
				sc := bufio.NewScanner(pr)
				for sc.Scan() {
					line := sc.Text()
					if t.firstLine == 0 {
						t.firstLine = time.Since(t0)
					}
					if strings.HasPrefix(line, bootstrap.ResultPrefix(uid)) && t.result == 0 {
						t.result = time.Since(t0)
						_, d, _ := bootstrap.ParseResult(strings.TrimPrefix(line, bootstrap.ResultPrefix(uid)))
						t.script = d
					}
				}
				if err := <-done; err != nil {
					errs <- err
					return
				}
				t.sessionEnd = time.Since(t0)
				c.Close()
				jump.Close()
				mu.Lock()
				all = append(all, t)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	_ = os.RemoveAll(base)
	med := func(f func(remoteTimes) time.Duration) float64 {
		v := make([]time.Duration, 0, len(all))
		for _, t := range all {
			v = append(v, f(t))
		}
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		return float64(v[len(v)/2].Microseconds()) / 1000
	}
	b.ReportMetric(med(func(t remoteTimes) time.Duration { return t.jump }), "jump-handshake-ms")
	b.ReportMetric(med(func(t remoteTimes) time.Duration { return t.target }), "target-handshake-ms")
	b.ReportMetric(med(func(t remoteTimes) time.Duration { return t.emptySession }), "empty-session-ms")
	b.ReportMetric(med(func(t remoteTimes) time.Duration { return t.firstLine }), "runner-first-line-ms")
	b.ReportMetric(med(func(t remoteTimes) time.Duration { return t.result }), "runner-result-ms")
	b.ReportMetric(med(func(t remoteTimes) time.Duration { return t.sessionEnd }), "runner-session-ms")
	b.ReportMetric(med(func(t remoteTimes) time.Duration { return t.script }), "script-ms")
}
