//go:build tools

// Package tools pins the Kubernetes programs that the test harness builds:
// kube-apiserver, kube-controller-manager and kubectl at v1.37.2.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
