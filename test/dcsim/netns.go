package dcsim

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/stargate-k8s/stargate/test/netns"
)

// Forwarder copies TCP connections accepted on a listener to a target
// reached through dial.
type Forwarder struct {
	l    net.Listener
	wg   sync.WaitGroup
	once sync.Once
}

// Addr is where the forwarder listens.
func (f *Forwarder) Addr() string { return f.l.Addr().String() }

// Close stops accepting and waits for the accept loop.
func (f *Forwarder) Close() error {
	var err error
	f.once.Do(func() {
		err = f.l.Close()
		f.wg.Wait()
	})
	return err
}

func forward(l net.Listener, dial func(ctx context.Context) (net.Conn, error)) *Forwarder {
	f := &Forwarder{l: l}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				t, err := dial(context.Background())
				if err != nil {
					return
				}
				defer t.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(t, c); closeWrite(t); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, t); closeWrite(c); done <- struct{}{} }()
				<-done
				<-done
			}()
		}
	}()
	return f
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// ForwardIntoNS listens on listenAddr inside ns and forwards every
// connection to hostAddr in the host's namespace (normally a loopback
// address, such as the test kube-apiserver's).
func ForwardIntoNS(ns, listenAddr, hostAddr string) (*Forwarder, error) {
	l, err := netns.Listen(ns, "tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s in %s: %w", listenAddr, ns, err)
	}
	return forward(l, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", hostAddr)
	}), nil
}

// ForwardFromHost listens on listenAddr in the host's namespace (a
// loopback address) and forwards every connection to target dialled from
// inside ns.
func ForwardFromHost(listenAddr, ns, target string) (*Forwarder, error) {
	l, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, err
	}
	return forward(l, func(ctx context.Context) (net.Conn, error) {
		return netns.Dial(ctx, ns, "tcp", target)
	}), nil
}
