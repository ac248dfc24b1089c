package tailnet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/stargate-k8s/stargate/test/netns"
)

// AddHost puts a host behind router r: a new namespace <prefix>-h-<name>
// whose link eth0 has host, joined by a veth pair to the router's link
// lan-<name> with gateway, which the host's default route uses. The routed
// subnet is gateway's prefix. Control.Close deletes the namespace.
func (c *Control) AddHost(r *Router, name string, gateway, host netip.Prefix) (string, error) {
	if gateway.Masked() != host.Masked() {
		return "", fmt.Errorf("host %s: gateway %s and host %s are not on one subnet", name, gateway, host)
	}
	ns := c.Prefix + "-h-" + name
	if err := netns.Add(ns); err != nil {
		return "", err
	}
	c.mu.Lock()
	c.netns = append(c.netns, ns)
	c.mu.Unlock()
	lan := "lan-" + name
	if len(lan) > 15 {
		return "", fmt.Errorf("host name %q too long for link %s (15 characters at most)", name, lan)
	}
	for _, args := range [][]string{
		{r.NetNS, "link", "add", lan, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{r.NetNS, "addr", "add", gateway.String(), "dev", lan},
		{r.NetNS, "link", "set", lan, "up"},
		{ns, "addr", "add", host.String(), "dev", "eth0"},
		{ns, "link", "set", "eth0", "up"},
		{ns, "route", "add", "default", "via", gateway.Addr().String()},
	} {
		if err := netns.In(args[0], args[1:]...); err != nil {
			return ns, err
		}
	}
	if !r.ownsNetNS {
		r.links = append(r.links, lan)
	}
	return ns, nil
}

// Ping sends one ICMP echo request from namespace ns to dst and waits up to
// timeout for the reply.
func Ping(ns string, dst netip.Addr, timeout time.Duration) error {
	var conn net.PacketConn
	if err := netns.Run(ns, func() error {
		var err error
		conn, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return fmt.Errorf("ICMP socket in %s: %w", ns, err)
	}
	defer conn.Close()
	id, seq := uint16(os.Getpid()), uint16(time.Now().UnixNano())
	msg := make([]byte, 16)
	msg[0] = 8 // echo request
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	copy(msg[8:], "stargate")
	binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	if _, err := conn.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fmt.Errorf("ping %s from %s: %w", dst, ns, err)
	}
	deadline := time.Now().Add(timeout)
	_ = conn.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("ping %s from %s: no reply within %s", dst, ns, timeout)
		}
		// A raw ip4:icmp socket sees every ICMP message of the namespace:
		// only this echo's reply counts.
		if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id && binary.BigEndian.Uint16(buf[6:]) == seq &&
			from.(*net.IPAddr).IP.Equal(dst.AsSlice()) {
			return nil
		}
	}
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// EchoServer accepts connections on l and echoes what each sends, until l
// is closed.
func EchoServer(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 512)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// TCPEcho connects from namespace ns to an EchoServer at addr and checks
// that a message comes back, all within timeout.
func TCPEcho(ns, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := netns.Dial(ctx, ns, "tcp4", addr)
	if err != nil {
		return fmt.Errorf("TCP to %s from %s: %w", addr, ns, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	want := "stargate " + randomHex(4)
	if _, err := conn.Write([]byte(want)); err != nil {
		return fmt.Errorf("TCP to %s from %s: %w", addr, ns, err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("TCP echo from %s to %s: %w", ns, addr, err)
	}
	if string(got) != want {
		return errors.New("TCP echo: got other bytes back")
	}
	return nil
}
