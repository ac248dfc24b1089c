// Package stargate holds the internal (hub) types of the stargate.io API.
// Every served version converts to and from these; the registry and
// validation work on them.
//
// +k8s:deepcopy-gen=package
// +groupName=stargate.io
package stargate
