package sshexec

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestDataIsAcknowledgedWithIgnoredRequest checks that every piece of data
// the server sends is answered by an ignored request (no reply asked), so
// a server that holds its next small packet until the last is acknowledged
// does not wait for the client's delayed acknowledgement.
func TestDataIsAcknowledgedWithIgnoredRequest(t *testing.T) {
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	_, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	clientSigner, _ := ssh.NewSignerFromKey(clientPriv)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type request struct {
		name      string
		wantReply bool
	}
	requests := make(chan request, 100)
	serverErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
		cfg.AddHostKey(hostSigner)
		sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
		if err != nil {
			serverErr <- err
			return
		}
		defer sc.Close()
		go func() {
			for r := range reqs {
				requests <- request{r.Type, r.WantReply}
				if r.WantReply {
					_ = r.Reply(false, nil)
				}
			}
		}()
		nc := <-chans
		ch, creqs, err := nc.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		go ssh.DiscardRequests(creqs)
		// Three pieces of output, each sent only after the one before
		// was acknowledged by a request.
		for i := 0; i < 3; i++ {
			if _, err := ch.Write([]byte("line\n")); err != nil {
				serverErr <- err
				return
			}
			select {
			case r := <-requests:
				if r.name != ackRequest || r.wantReply {
					serverErr <- &net.OpError{Op: "unexpected request " + r.name}
					return
				}
			case <-time.After(10 * time.Second):
				serverErr <- context.DeadlineExceeded
				return
			}
		}
		_ = ch.Close()
		serverErr <- nil
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Connect(ctx, Config{User: "u", Signer: clientSigner, Target: Endpoint{Addr: ln.Addr().String(), HostKey: ssh.FixedHostKey(hostSigner.PublicKey())}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Requests made during the handshake are not counted: start clean.
	time.Sleep(100 * time.Millisecond)
	for len(requests) > 0 {
		<-requests
	}
	ch, reqs, err := c.OpenChannel("test", nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	buf := make([]byte, 64)
	got := 0
	for {
		n, err := ch.Read(buf)
		got += n
		if err != nil {
			break
		}
	}
	if err := <-serverErr; err != nil {
		t.Fatalf("server: each piece of output should be followed by a %s request without reply: %v", ackRequest, err)
	}
	if got != 3*len("line\n") {
		t.Fatalf("read %d bytes, want %d", got, 3*len("line\n"))
	}
}
