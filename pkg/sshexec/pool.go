package sshexec

import (
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// JumpPool shares one SSH connection to a jump host among all connections
// made through it at the same time, so N servers behind one DC router cost
// one handshake with the router instead of N. A connection is shared only
// between configs with the same jump address, user, client key and jump
// Endpoint.HostKeyID, so every user of it would have verified the same
// router key the same way. An unused connection is closed after Idle; a
// broken one is dropped and the next user dials anew.
type JumpPool struct {
	// Idle is how long a jump connection nobody uses stays open; 30s when
	// zero.
	Idle time.Duration

	mu    sync.Mutex
	conns map[string]*jumpConn
	// dials counts handshakes with jump hosts (for tests).
	dials int
}

// NewJumpPool returns an empty pool.
func NewJumpPool(idle time.Duration) *JumpPool {
	return &JumpPool{Idle: idle, conns: map[string]*jumpConn{}}
}

// Dials is how many jump connections the pool has opened so far.
func (p *JumpPool) Dials() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dials
}

// Close closes every idle connection and stops pooling the others, which
// close when their last user is done.
func (p *JumpPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, jc := range p.conns {
		delete(p.conns, k)
		jc.dropped = true
		if jc.refs == 0 && jc.client != nil {
			_ = jc.client.Close()
		}
	}
}

// jumpConn is one pooled connection. Fields other than ready, client and
// err are guarded by the pool's mutex; client and err are set once before
// ready is closed.
type jumpConn struct {
	pool   *JumpPool
	key    string
	ready  chan struct{}
	client *ssh.Client
	err    error

	refs    int
	dropped bool // no longer in the pool; closed when refs reaches 0
	idle    *time.Timer
}

func poolKey(cfg Config) (string, bool) {
	if cfg.Jump == nil || cfg.Jump.HostKeyID == "" || cfg.Signer == nil {
		return "", false
	}
	return cfg.User + "\x00" + cfg.Jump.Addr + "\x00" + base64.StdEncoding.EncodeToString(cfg.Signer.PublicKey().Marshal()) + "\x00" + cfg.Jump.HostKeyID, true
}

// get returns a connection to cfg.Jump with a reference held, dialing one
// when the pool has none; callers that arrive while it is being dialed
// wait for that dial instead of making their own.
func (p *JumpPool) get(ctx context.Context, key string, dial func() (*ssh.Client, error)) (*jumpConn, error) {
	p.mu.Lock()
	if p.conns == nil {
		p.conns = map[string]*jumpConn{}
	}
	jc := p.conns[key]
	if jc == nil {
		jc = &jumpConn{pool: p, key: key, ready: make(chan struct{})}
		p.conns[key] = jc
		p.dials++
		jc.refs++
		p.mu.Unlock()
		jc.client, jc.err = dial()
		close(jc.ready)
		if jc.err != nil {
			p.mu.Lock()
			p.dropLocked(jc)
			jc.refs--
			p.mu.Unlock()
			return nil, jc.err
		}
		go func() {
			// The router went away or the connection broke: the next
			// user dials anew.
			_ = jc.client.Wait()
			p.mu.Lock()
			p.dropLocked(jc)
			p.mu.Unlock()
		}()
		return jc, nil
	}
	jc.refs++
	if jc.idle != nil {
		jc.idle.Stop()
		jc.idle = nil
	}
	p.mu.Unlock()
	select {
	case <-jc.ready:
	case <-ctx.Done():
		jc.release()
		return nil, ctx.Err()
	}
	if jc.err != nil {
		jc.release()
		return nil, jc.err
	}
	return jc, nil
}

// dropLocked takes jc out of the pool; it closes when unused.
func (p *JumpPool) dropLocked(jc *jumpConn) {
	if p.conns[jc.key] == jc {
		delete(p.conns, jc.key)
	}
	jc.dropped = true
	if jc.refs == 0 && jc.client != nil {
		_ = jc.client.Close()
	}
}

// broken drops jc from the pool after a failure that may be its own.
func (jc *jumpConn) broken() {
	jc.pool.mu.Lock()
	defer jc.pool.mu.Unlock()
	jc.pool.dropLocked(jc)
}

// release gives back a reference; the last one closes a dropped
// connection or starts the idle timer of a pooled one.
func (jc *jumpConn) release() {
	p := jc.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	jc.refs--
	if jc.refs > 0 || jc.client == nil {
		return
	}
	if jc.dropped {
		_ = jc.client.Close()
		return
	}
	idle := p.Idle
	if idle <= 0 {
		idle = 30 * time.Second
	}
	jc.idle = time.AfterFunc(idle, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if jc.refs == 0 && !jc.dropped {
			p.dropLocked(jc)
		}
	})
}

// isChannelRefused says whether the jump host refused a direct-tcpip
// channel (target unreachable, forwarding refused): the jump connection
// itself is fine.
func isChannelRefused(err error) bool {
	var oce *ssh.OpenChannelError
	return errors.As(err, &oce)
}
