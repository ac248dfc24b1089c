//go:build tools

// Package tools pins the control-plane programs that the test harness builds:
// kube-apiserver, kube-controller-manager and kubectl at v1.37.2, and etcd's
// server at v3.7.0, the etcd that k8s.io/kubernetes v1.37.2 itself requires.
// One module for all four lets hack/install-test-bins.sh build them in one
// go build, which compiles the packages they share (gRPC, protobuf, the etcd
// client, Prometheus, OpenTelemetry) once.
//
// The same module pins the programs of the real test nodes, kubelet,
// kube-proxy and kube-scheduler, which hack/install-node-bins.sh builds with
// the same replace block, so that they share the control plane's version.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
