// Command bench compares stargate.io's aggregated API with a CRD of the
// same schema, in one run against one test kube-apiserver, and prints a
// Markdown report (see docs/benchmarks.md):
//
//	go run ./hack/bench -n 5000
//
// It needs bin/ (hack/install-test-bins.sh) and builds stargate-apiserver
// from ./cmd/apiserver unless -stargate-binary names one.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/stargate-k8s/stargate/test/bench"
)

func main() {
	o := bench.Options{}
	flag.IntVar(&o.N, "n", 5000, "Servers each side creates, gets and lists")
	flag.IntVar(&o.Concurrency, "c", 12, "requests in flight for creates, status updates and gets")
	flag.IntVar(&o.Rounds, "rounds", 6, "rounds per phase; each runs every side in a rotated order")
	flag.IntVar(&o.GetPasses, "get-passes", 2, "times every Server is read")
	flag.IntVar(&o.Lists, "lists", 12, "full lists per side and content type")
	contentTypes := flag.String("content-types", "json,protobuf", "response media types to measure gets and lists in (json, protobuf, cbor or a media type)")
	flag.BoolVar(&o.Status, "status", true, "fill every Server's status through the status subresource")
	flag.BoolVar(&o.Direct, "direct", true, "also call stargate-apiserver directly, to measure the aggregator's proxy hop")
	flag.StringVar(&o.StargateEtcd, "stargate-etcd", "embedded", "etcd of stargate-apiserver: embedded (its default) or shared (the kube-apiserver's)")
	flag.StringVar(&o.StargateBinary, "stargate-binary", "", "stargate-apiserver to run (default: build ./cmd/apiserver into bin/)")
	flag.StringVar(&o.Dir, "dir", "", "keep the test world's files (logs, certificates) here (default: a temporary directory, removed)")
	timeout := flag.Duration("timeout", 30*time.Minute, "give up after this long")
	quiet := flag.Bool("q", false, "no progress on stderr")
	flag.Parse()
	o.ContentTypes = strings.Split(*contentTypes, ",")
	if !*quiet {
		start := time.Now()
		o.Logf = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "%6.1fs "+format+"\n", append([]any{time.Since(start).Seconds()}, args...)...)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := bench.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Printf("# Aggregated API vs CRD: `go run ./hack/bench %s`\n\n", strings.Join(os.Args[1:], " "))
	rep.Print(os.Stdout)
}
