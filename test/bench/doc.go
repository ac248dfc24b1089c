// Package bench compares stargate.io's aggregated API with a CRD of the same
// schema served by kube-apiserver itself: it creates, status-updates, gets
// and lists the same Servers through both in one run against one test
// kube-apiserver, and reports throughput, latency, the ratios
// aggregated/CRD, and where the CPU time goes (kube-apiserver, etcd,
// stargate-apiserver, the benchmark client). hack/bench is its command.
package bench

//go:generate sh -c "cd ../.. && go run ./hack/bench/crdgen"
