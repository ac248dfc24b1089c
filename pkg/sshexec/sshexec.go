// Package sshexec runs commands on remote hosts over SSH, optionally
// through a jump host, with every host key verified before anything is
// sent, and with connection failures retried with backoff.
package sshexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Endpoint is one SSH server and how its host key is verified.
type Endpoint struct {
	// Addr is host:port.
	Addr string
	// HostKey verifies the key the server presents; required. When it
	// comes from PinnedHostKey, KnownHosts, HostKeyCallback or
	// golang.org/x/crypto/ssh/knownhosts, the connection asks the server
	// for a key of a type it accepts (a host has one key per type), not
	// for the library's default preference.
	HostKey ssh.HostKeyCallback
	// HostKeyID names what HostKey accepts (e.g. a hash of the known_hosts
	// data). A JumpPool shares a jump connection only among configs with
	// the same HostKeyID; empty means the jump connection is never shared.
	HostKeyID string
}

// DialFunc opens the TCP connection to the first hop.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Config says where to connect and as whom.
type Config struct {
	User   string
	Signer ssh.Signer
	Target Endpoint
	// Jump is the jump host, or nil to connect to Target directly.
	Jump *Endpoint
	// Dial opens the first TCP connection; a net.Dialer when nil.
	Dial DialFunc
	// HandshakeTimeout bounds each TCP connect plus SSH handshake. 15s when zero.
	HandshakeTimeout time.Duration
	// Attempts is how many times a failed connection is tried. 1 when zero.
	Attempts int
	// Backoff is the wait before the second attempt; it doubles after each
	// failure up to MaxBackoff. 1s when zero.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// OnRetry, when set, hears of every failed attempt that will be retried.
	OnRetry func(attempt int, err error, wait time.Duration)
	// JumpPool, when set, shares the connection to Jump with other
	// connections through the same jump host (see JumpPool).
	JumpPool *JumpPool
}

// Client is a connection to Target (through Jump when set).
type Client struct {
	*ssh.Client
	jump   *ssh.Client
	pooled *jumpConn
	once   sync.Once
}

// Close closes the connection and the jump connection (or gives a pooled
// one back to its pool).
func (c *Client) Close() error {
	err := c.Client.Close()
	c.once.Do(func() {
		if c.jump != nil {
			err = errors.Join(err, c.jump.Close())
		}
		if c.pooled != nil {
			c.pooled.release()
		}
	})
	return err
}

// IsPermanent says whether err will not go away by retrying: a host key
// that does not verify or credentials the server refuses.
func IsPermanent(err error) bool {
	var mismatch *HostKeyMismatchError
	var unknown *HostKeyUnknownError
	if errors.As(err, &mismatch) || errors.As(err, &unknown) {
		return true
	}
	return strings.Contains(err.Error(), "unable to authenticate")
}

// Connect connects, retrying failures that are not permanent.
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	attempts := max(cfg.Attempts, 1)
	wait := cfg.Backoff
	if wait <= 0 {
		wait = time.Second
	}
	maxWait := cfg.MaxBackoff
	if maxWait <= 0 {
		maxWait = 30 * time.Second
	}
	var err error
	for i := 1; ; i++ {
		var c *Client
		c, err = connectOnce(ctx, cfg)
		if err == nil {
			return c, nil
		}
		if IsPermanent(err) || ctx.Err() != nil {
			return nil, err
		}
		if i >= attempts {
			return nil, fmt.Errorf("gave up after %d attempts: %w", attempts, err)
		}
		if cfg.OnRetry != nil {
			cfg.OnRetry(i, err, wait)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, maxWait)
	}
}

func connectOnce(ctx context.Context, cfg Config) (*Client, error) {
	timeout := cfg.HandshakeTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	dial := cfg.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	if cfg.Target.HostKey == nil || (cfg.Jump != nil && cfg.Jump.HostKey == nil) {
		return nil, errors.New("sshexec: no host key verification configured")
	}
	first := cfg.Target
	if cfg.Jump != nil {
		first = *cfg.Jump
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dialFirst := func() (*ssh.Client, error) {
		conn, err := dial(dctx, "tcp", first.Addr)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", first.Addr, err)
		}
		return handshake(ctx, conn, first, cfg, timeout)
	}
	if key, ok := poolKey(cfg); ok && cfg.JumpPool != nil {
		return connectPooled(ctx, dctx, cfg, key, timeout, dialFirst)
	}
	c, err := dialFirst()
	if err != nil {
		return nil, err
	}
	if cfg.Jump == nil {
		return &Client{Client: c}, nil
	}
	// The jump host opens the TCP connection to the target (direct-tcpip);
	// the handshake with the target runs end to end through it, so the
	// target's host key is verified by us, not by the jump host.
	tconn, err := dialThrough(dctx, c, cfg.Target.Addr)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to %s through jump host %s: %w", cfg.Target.Addr, cfg.Jump.Addr, err)
	}
	tc, err := handshake(ctx, tconn, cfg.Target, cfg, timeout)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &Client{Client: tc, jump: c}, nil
}

// connectPooled connects to cfg.Target through the pool's connection to
// the jump host. The target's host key is verified here, end to end, as on
// a connection of its own.
func connectPooled(ctx, dctx context.Context, cfg Config, key string, timeout time.Duration, dialJump func() (*ssh.Client, error)) (*Client, error) {
	jc, err := cfg.JumpPool.get(dctx, key, dialJump)
	if err != nil {
		return nil, err
	}
	tconn, err := dialThrough(dctx, jc.client, cfg.Target.Addr)
	if err != nil {
		if !isChannelRefused(err) {
			// Maybe a dead connection kept by the pool: the next
			// attempt dials the jump host again.
			jc.broken()
		}
		jc.release()
		return nil, fmt.Errorf("connect to %s through jump host %s: %w", cfg.Target.Addr, cfg.Jump.Addr, err)
	}
	tc, err := handshake(ctx, tconn, cfg.Target, cfg, timeout)
	if err != nil {
		jc.release()
		return nil, err
	}
	return &Client{Client: tc, pooled: jc}, nil
}

func dialThrough(ctx context.Context, c *ssh.Client, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := c.Dial("tcp", addr)
		ch <- result{conn, err}
	}()
	select {
	case r := <-ch:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func handshake(ctx context.Context, conn net.Conn, ep Endpoint, cfg Config, timeout time.Duration) (*ssh.Client, error) {
	var keyErr error
	verify := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		keyErr = ep.HostKey(hostname, remote, key)
		return keyErr
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	ac := newAckConn(conn)
	// Tell the server which of its host keys we can verify, so that a
	// host with several presents the one we know.
	accepted := acceptedHostKeys(ep.HostKey, ep.Addr, ac.RemoteAddr())
	algos := algorithmsFor(accepted)
	sc, chans, reqs, err := ssh.NewClientConn(ac, ep.Addr, &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback:   verify,
		HostKeyAlgorithms: algos,
		Timeout:           timeout,
	})
	if err != nil {
		conn.Close()
		if keyErr != nil {
			return nil, keyErr
		}
		var neg *ssh.AlgorithmNegotiationError
		if algos != nil && errors.As(err, &neg) && neg.What == "host key" {
			// The host has no key of a type we accept: to the user
			// that is a key other than the one expected, not a
			// network failure worth retrying.
			return nil, mismatch(ep.Addr, fmt.Sprintf("no key of type %s (it offers %s)", strings.Join(algos, ", "), strings.Join(neg.RequestedAlgorithms, ", ")), accepted)
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", ep.Addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	c := ssh.NewClient(sc, chans, reqs)
	ac.acknowledge(c)
	return c, nil
}

// runGrace is how long Run waits, after ctx ended and the session was
// closed, for the remote side to close it too.
const runGrace = 2 * time.Second

// Run runs cmd in a new session with stdin, stdout and stderr attached (any
// may be nil). A non-zero exit is returned as *ssh.ExitError. When ctx ends
// the session is closed and Run returns within runGrace even if the remote
// side keeps the channel open (OpenSSH's sshd does while the command, e.g.
// a silent tail -f, has not exited): what is left of the session then
// ends with the remote command or when the Client is closed.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	s, err := c.NewSession()
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	s.Stdin, s.Stdout, s.Stderr = stdin, stdout, stderr
	if err := s.Start(cmd); err != nil {
		_ = s.Close()
		return err
	}
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()
	select {
	case err := <-waited:
		_ = s.Close()
		return err
	case <-ctx.Done():
	}
	_ = s.Close()
	select {
	case err = <-waited:
	case <-time.After(runGrace):
		err = errors.New("the session did not close")
	}
	return fmt.Errorf("%w (%v)", ctx.Err(), err)
}

// MaxOutputBytes bounds what Output keeps of a command's stdout, and
// maxErrorOutputBytes what it keeps of stderr for the error: the commands
// Stargate runs this way print a word or a line, and a host (which may be
// compromised) must not make the controller hold more.
const (
	MaxOutputBytes      = 64 * 1024
	maxErrorOutputBytes = 4 * 1024
)

// ErrOutputTooLarge means a command printed more than MaxOutputBytes.
var ErrOutputTooLarge = errors.New("the command printed more than the output limit")

// Output runs cmd and returns its stdout; stderr, up to 4 KiB, is included
// in the error. A command that prints more than MaxOutputBytes is stopped
// (its session closed) and ErrOutputTooLarge returned.
func (c *Client) Output(ctx context.Context, cmd string) ([]byte, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := &limitedBuffer{max: MaxOutputBytes, overflow: func() { cancel(ErrOutputTooLarge) }}
	errb := &limitedBuffer{max: maxErrorOutputBytes}
	err := c.Run(ctx, cmd, nil, out, errb)
	if errors.Is(context.Cause(ctx), ErrOutputTooLarge) {
		return out.Bytes(), fmt.Errorf("%w (%d bytes): %q", ErrOutputTooLarge, MaxOutputBytes, cmd)
	}
	if err != nil {
		return out.Bytes(), fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// limitedBuffer keeps the first max bytes written to it and drops the
// rest; the first write past max calls overflow (when set). It has no
// ReadFrom (the buffer is a field, not embedded), so io.Copy goes through
// Write.
type limitedBuffer struct {
	// mu: the session may still write after Run returned (ctx ended).
	mu       sync.Mutex
	buf      bytes.Buffer
	max      int
	overflow func()
	over     bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room < len(p) {
		b.buf.Write(p[:max(room, 0)])
		if !b.over && b.overflow != nil {
			b.overflow()
		}
		b.over = true
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ParsePrivateKey parses an OpenSSH or PEM private key.
func ParsePrivateKey(pemBytes []byte) (ssh.Signer, error) {
	s, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		// Never wrap the key itself into the error.
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, errors.New("the private key is encrypted with a passphrase; Stargate needs an unencrypted key")
		}
		return nil, errors.New("the private key cannot be parsed (expected an OpenSSH or PEM private key)")
	}
	return s, nil
}

// Quote quotes s for a POSIX shell.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
