package nodeagent

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/vishvananda/netns"
)

// Probe checks that a target across the tunnel (the AKS router, or the
// API server) answers a TCP connect.
type Probe struct {
	Target  string
	Timeout time.Duration
	// NS is the network namespace to dial from; not open means the agent's own.
	NS netns.NsHandle
}

// Check connects once and closes the connection at once. The error says
// why the target did not answer.
func (p *Probe) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	var d net.Dialer
	if !p.NS.IsOpen() {
		c, err := d.DialContext(ctx, "tcp", p.Target)
		if err != nil {
			return err
		}
		return c.Close()
	}
	// A socket belongs to the network namespace of the thread that made
	// it, so dial from a goroutine locked to a thread moved into NS.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get own network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(p.NS); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		c, err := d.DialContext(ctx, "tcp", p.Target)
		if err == nil {
			err = c.Close()
		}
		// A thread that cannot go back stays locked and dies with this
		// goroutine instead of running other goroutines in the wrong
		// namespace.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
