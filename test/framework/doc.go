// Package framework starts the real control plane Stargate runs behind:
// etcd and kube-apiserver (through controller-runtime's envtest, with the
// aggregation layer configured), stargate-apiserver as a subprocess
// registered through an APIService, and the real kubectl. Integration tests
// and `make dev` both build their world from it.
//
// Every dependency that is missing (a binary in bin/, cmd/apiserver) is an
// error that says what to run; nothing here skips.
package framework
