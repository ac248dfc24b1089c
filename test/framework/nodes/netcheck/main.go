// Command netcheck is the one program of the images the real test nodes
// run (test/framework/nodes), built static and put into images offline:
//
//	netcheck pause             the sandbox ("pause") stand-in: waits for
//	                           SIGTERM or SIGINT and reaps children
//	netcheck serve PORT        answers every TCP connection with a line
//	                           "netcheck HOSTNAME" and logs each peer
//	netcheck connect HOST:PORT dials, prints the line the server sends
//	netcheck ping IP           sends ICMP echo requests until one is
//	                           answered (needs CAP_NET_RAW: run as root)
//	netcheck apiserver         GETs /version of kube-apiserver through
//	                           Service default/kubernetes as in-cluster
//	                           clients do (KUBERNETES_SERVICE_HOST, the
//	                           ServiceAccount's CA and token), verifying
//	                           the serving certificate; prints the answer
//
// connect and ping give up after 10 seconds and exit 1.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: netcheck pause | serve PORT | connect HOST:PORT | ping IP | apiserver")
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; {
	case cmd == "pause" && len(args) == 0:
		pause()
	case cmd == "serve" && len(args) == 1:
		err = serve(args[0])
	case cmd == "connect" && len(args) == 1:
		err = connect(args[0])
	case cmd == "ping" && len(args) == 1:
		err = ping(args[0])
	case cmd == "apiserver" && len(args) == 0:
		err = apiserver()
	default:
		fail("usage: netcheck pause | serve PORT | connect HOST:PORT | ping IP | apiserver")
	}
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "netcheck:", msg)
	os.Exit(1)
}

// pause is what a sandbox's first process does: hold the namespaces, reap
// orphans (it is PID 1 of the pod when the PID namespace is shared), and
// end on SIGTERM or SIGINT.
func pause() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

func serve(port string) error {
	host, _ := os.Hostname()
	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	fmt.Printf("serving on %s as %s\n", l.Addr(), host)
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		fmt.Printf("connection from %s\n", c.RemoteAddr())
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "netcheck %s\n", host)
		}()
	}
}

func connect(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			last = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			last = err
			continue
		}
		fmt.Print(line)
		return nil
	}
	return fmt.Errorf("connect %s: %w", addr, last)
}

func ping(ip string) error {
	dst := net.ParseIP(ip).To4()
	if dst == nil {
		return fmt.Errorf("ping: %q is not an IPv4 address", ip)
	}
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return fmt.Errorf("ping: raw ICMP socket (needs CAP_NET_RAW): %w", err)
	}
	defer c.Close()
	id := uint16(os.Getpid())
	deadline := time.Now().Add(10 * time.Second)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		msg := make([]byte, 16)
		msg[0] = 8 // echo request
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], seq)
		copy(msg[8:], "netcheck")
		binary.BigEndian.PutUint16(msg[2:], checksum(msg))
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst}); err != nil {
			return fmt.Errorf("ping %s: %w", ip, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			if err != nil {
				return fmt.Errorf("ping %s: %w", ip, err)
			}
			// An echo reply (type 0) to this request, from the target.
			if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id &&
				from.(*net.IPAddr).IP.Equal(dst) {
				fmt.Printf("echo reply from %s seq %d\n", ip, binary.BigEndian.Uint16(buf[6:]))
				return nil
			}
		}
	}
	return fmt.Errorf("ping %s: no echo reply within 10s", ip)
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
		sum = (sum & 0xffff) + sum>>16
	}
	return ^uint16(sum)
}

func apiserver() error {
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	ca, err := os.ReadFile(sa + "ca.crt")
	if err != nil {
		return err
	}
	token, err := os.ReadFile(sa + "token")
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return errors.New("no certificate in " + sa + "ca.crt")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	url := "https://" + net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")) + "/version"
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	fmt.Printf("%s\n", body)
	return nil
}
