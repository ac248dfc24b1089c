//go:build tools

// Package tools pins the Tailscale programs that the test world runs:
// tailscaled and the tailscale CLI of tailscale.com v1.102.5 (the newest
// release that builds with this project's Go; v1.104 needs a newer Go and
// modules the proxy refuses). The control server beside them is ours, in
// ./tailcontrol, built from Tailscale's own testcontrol, DERP and STUN.
// hack/install-tailscale.sh builds all three in one go build.
package tools

import (
	_ "tailscale.com/cmd/tailscale"
	_ "tailscale.com/cmd/tailscaled"
)
