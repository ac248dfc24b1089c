package sshexec

import (
	"net"

	"golang.org/x/crypto/ssh"
)

// ackRequest is the request the client sends to have data acknowledged.
// OpenSSH's sshd knows it and, with no reply asked, ignores it; any other
// server ignores a request it does not know when no reply is asked
// (RFC 4254, section 4).
const ackRequest = "keepalive@openssh.com"

// ackConn is the connection under an SSH client. sshd leaves Nagle's
// algorithm on for sessions without a terminal (and before any session),
// so while one small packet of its own is not yet acknowledged it holds
// the next: the confirmation of a channel it opens, the next line of a
// command's output. The receiving kernel delays an acknowledgement it
// cannot piggyback on data by up to 40 ms on Linux, so each such pair
// costs that much, once per hop. Whenever data arrives, ackConn kicks the
// client to send a request the server ignores: the segment carrying it
// acknowledges the data at once, and through a jump host the jump host
// forwards it, which acknowledges the target's data on that hop too.
type ackConn struct {
	net.Conn
	kick chan struct{}
}

func newAckConn(c net.Conn) *ackConn {
	return &ackConn{Conn: c, kick: make(chan struct{}, 1)}
}

func (c *ackConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		select {
		case c.kick <- struct{}{}:
		default: // one is pending already
		}
	}
	return n, err
}

// acknowledge sends the ignored request after each kick until the client's
// connection ends. Kicks before the handshake is done wait in the channel.
func (c *ackConn) acknowledge(client *ssh.Client) {
	done := make(chan struct{})
	go func() {
		_ = client.Wait()
		close(done)
	}()
	go func() {
		for {
			select {
			case <-done:
				return
			case <-c.kick:
				_, _, _ = client.SendRequest(ackRequest, false, nil)
			}
		}
	}()
}
