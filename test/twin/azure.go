package twin

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/stargate-k8s/stargate/pkg/azure/azurefake"
	"github.com/stargate-k8s/stargate/test/framework"
)

// armHost is the Azure Resource Manager endpoint stargate-controller's
// SDK calls; the proxy answers for it and for nothing else.
const armHost = "management.azure.com:443"

// ARM serves an azurefake route table to a stargate-controller process
// with no change to its code: the Azure SDK's default HTTP client honours
// HTTPS_PROXY, so the controller's CONNECT to management.azure.com reaches
// a proxy on loopback that terminates TLS with a certificate of a CA made
// here (the controller trusts it through SSL_CERT_FILE) and hands each
// request to the SDK's own fake server (azurefake.Table.Transport). The
// token comes from azidentity's App Service managed identity, a loopback
// endpoint named by IDENTITY_ENDPOINT. Any other CONNECT is refused: no
// packet leaves the machine.
type ARM struct {
	Table *azurefake.Table
	// ProxyAddr and IdentityAddr are loopback host:ports.
	ProxyAddr, IdentityAddr string
	CAFile                  string

	identityHeader string
	mu             sync.Mutex
	lro            map[string]string // operation path -> API name
	proxyL, idL    net.Listener
	srv            *http.Server
	idSrv          *http.Server
	conns          chan net.Conn
	wg             sync.WaitGroup
}

// StartARM starts the proxy and the identity endpoint for table, with
// the CA in dir.
func StartARM(dir string, table *azurefake.Table) (*ARM, error) {
	ca, err := framework.NewCA("twin-arm-ca")
	if err != nil {
		return nil, err
	}
	cert, err := ca.ServingCert("management.azure.com", []string{"management.azure.com"}, nil)
	if err != nil {
		return nil, err
	}
	certFile, keyFile, err := cert.Write(dir, "arm")
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	a := &ARM{Table: table, CAFile: filepath.Join(dir, "arm-ca.crt"), identityHeader: "twin-" + randHex(8), lro: map[string]string{}, conns: make(chan net.Conn)}
	if err := os.WriteFile(a.CAFile, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	if a.proxyL, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if a.idL, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		a.proxyL.Close()
		return nil, err
	}
	a.ProxyAddr, a.IdentityAddr = a.proxyL.Addr().String(), a.idL.Addr().String()

	fake := table.Transport()
	a.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			api := a.apiName(r)
			if api == "" {
				http.Error(w, "the twin's Azure fake serves route tables and routes only", http.StatusNotFound)
				return
			}
			out := r.Clone(context.WithValue(r.Context(), runtime.CtxAPINameKey{}, api))
			out.RequestURI = ""
			out.URL.Scheme, out.URL.Host = "https", "management.azure.com"
			resp, err := fake.Do(out)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			for k, vs := range resp.Header {
				for _, v := range vs {
					w.Header().Add(k, v)
				}
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		_ = a.srv.Serve(&chanListener{c: a.conns, addr: a.proxyL.Addr()})
	}()
	go func() {
		defer a.wg.Done()
		for {
			c, err := a.proxyL.Accept()
			if err != nil {
				close(a.conns)
				return
			}
			go a.connect(c, tlsCfg)
		}
	}()

	a.idSrv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-IDENTITY-HEADER") != a.identityHeader {
				http.Error(w, "wrong identity header", http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{
				"access_token": "twin-" + randHex(8), "token_type": "Bearer",
				"expires_on": fmt.Sprint(time.Now().Add(time.Hour).Unix()), "resource": r.URL.Query().Get("resource"),
			})
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	a.wg.Add(1)
	go func() { defer a.wg.Done(); _ = a.idSrv.Serve(a.idL) }()
	return a, nil
}

// apiName names the SDK method a request stands for, which the SDK's
// fake servers dispatch on (the client sets it in its own request's
// context, which does not cross the network): the route tables' and
// routes' Get, BeginCreateOrUpdate and BeginDelete, and the polls of a
// fake long-running operation (a GET of the operation's URL plus
// /get/fake/status), which belong to the operation started there.
func (a *ARM) apiName(r *http.Request) string {
	path := strings.ToLower(r.URL.Path)
	const poll = "/get/fake/status"
	if r.Method == http.MethodGet && strings.HasSuffix(path, poll) {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.lro[strings.TrimSuffix(path, poll)]
	}
	client := "RouteTablesClient"
	if strings.Contains(path, "/routes/") {
		client = "RoutesClient"
	}
	var api string
	switch r.Method {
	case http.MethodGet:
		return client + ".Get"
	case http.MethodPut:
		api = client + ".BeginCreateOrUpdate"
	case http.MethodDelete:
		api = client + ".BeginDelete"
	default:
		return ""
	}
	a.mu.Lock()
	a.lro[path] = api
	a.mu.Unlock()
	return api
}

// connect answers one proxy connection: a CONNECT to management.azure.com
// becomes a TLS connection served by the fake; anything else is refused.
func (a *ARM) connect(c net.Conn, cfg *tls.Config) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		c.Close()
		return
	}
	if req.Method != http.MethodConnect || req.Host != armHost {
		fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		c.Close()
		return
	}
	defer func() { _ = recover() }() // conns closed by Close
	a.conns <- tls.Server(&bufferedConn{Conn: c, r: br}, cfg)
}

// Env is the environment the controller needs to reach the fake: the
// proxy, the CA, and the managed identity.
func (a *ARM) Env() []string {
	return []string{
		"HTTPS_PROXY=http://" + a.ProxyAddr,
		"SSL_CERT_FILE=" + a.CAFile,
		"IDENTITY_ENDPOINT=http://" + a.IdentityAddr + "/msi/token",
		"IDENTITY_HEADER=" + a.identityHeader,
		"AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential",
	}
}

// Close stops the proxy and the identity endpoint.
func (a *ARM) Close() error {
	a.proxyL.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
	_ = a.idSrv.Shutdown(ctx)
	a.wg.Wait()
	return nil
}

type chanListener struct {
	c    chan net.Conn
	addr net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	c, ok := <-l.c
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l *chanListener) Close() error   { return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// VNet renders the Azure route table into the kernel routes of the AKS
// VNet's namespace: every route whose next hop is in the VNet becomes
// "prefix via next hop" (protocol azureProto), re-rendered whenever the
// table's ETag changes, whoever changed it. Others are left alone.
type VNet struct {
	NetNS  string
	Table  *azurefake.Table
	Subnet string // routes to next hops outside it are not rendered

	mu       sync.Mutex
	renders  int
	lastErr  error
	rendered map[string]string
	stop     chan struct{}
	done     chan struct{}
}

const (
	azureProto  = "200" // routes of the Azure route table
	ciliumProto = "201" // routes to nodes' pod CIDRs (what Cilium programs)
)

// Start renders at once and then on every change, polling the ETag every
// 50 ms until Stop.
func (v *VNet) Start() {
	v.stop, v.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(v.done)
		etag := ""
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if e := v.Table.ETag(); e != etag {
				if err := v.render(); err == nil {
					etag = e
				}
			}
			select {
			case <-v.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends the rendering.
func (v *VNet) Stop() {
	if v.stop != nil {
		close(v.stop)
		<-v.done
		v.stop = nil
	}
}

// Rendered is the routes last rendered (prefix -> next hop).
func (v *VNet) Rendered() map[string]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string]string{}
	for k, x := range v.rendered {
		out[k] = x
	}
	return out
}

func (v *VNet) render() error {
	want := map[string]string{}
	for _, desc := range v.Table.RouteMap() {
		prefix, nh, ok := strings.Cut(desc, " via ")
		if !ok || !inPrefix(v.Subnet, nh) {
			continue
		}
		want[prefix] = nh
	}
	err := syncRoutes(v.NetNS, azureProto, want)
	v.mu.Lock()
	v.renders++
	v.lastErr = err
	if err == nil {
		v.rendered = want
	}
	v.mu.Unlock()
	return err
}
