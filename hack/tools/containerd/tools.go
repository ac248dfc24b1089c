//go:build tools

// Package tools pins the container runtime that the real test nodes run:
// containerd, its runc shim and ctr at v2.4.2. hack/install-node-bins.sh
// builds them from this module with CGO_ENABLED=0 and the tags
// no_btrfs no_devmapper no_zfs, which leave out the snapshotters that need
// cgo or kernel modules the nodes never use (they run on overlayfs).
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
