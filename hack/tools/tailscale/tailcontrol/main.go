// Command tailcontrol is the tailnet of Stargate's test world: Tailscale's
// own control server for tests (tailscale.com/tstest/integration/testcontrol),
// a DERP relay (derp/derpserver) and a STUN responder (net/stun), all real
// Tailscale code, served over https on one address so that real tailscaled
// and tailscale CLIs join it with --login-server. Beside them it serves the
// part of the Tailscale REST API v2 that Stargate's controller calls, on the
// control server's own state:
//
//	POST /api/v2/oauth/token                    OAuth client credentials -> bearer token
//	GET  /api/v2/tailnet/{tailnet}/devices      devices (?fields=all adds routes)
//	GET  /api/v2/device/{id}/routes             advertised and enabled routes
//	POST /api/v2/device/{id}/routes             replace the enabled routes
//
// The REST API is ours: testcontrol has no notion of enabled routes, only of
// the routes a node serves to its peers. This program keeps the enabled set
// per device and gives testcontrol advertised ∩ enabled, recomputed whenever
// a node's advertisement or the enabled set changes, so that a route enabled
// but not advertised carries nothing, as in the real service.
//
// Registration needs the one auth key of --auth-key-file; the REST API takes
// the one API key of --api-key-file (HTTP basic, as the API key's user name,
// or as a bearer token) or a token issued to the OAuth client of
// --oauth-client-id and --oauth-client-secret-file; anything else gets 401.
package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
)

func main() {
	var (
		listen        = flag.String("listen", "", "https address of control, DERP and the REST API, e.g. 203.0.113.193:443 (DERP's HTTPS probes need port 443)")
		stunListen    = flag.String("stun-listen", "", "UDP address of the STUN responder (default: the host of --listen, port 3478)")
		certFile      = flag.String("tls-cert", "", "PEM certificate of --listen")
		keyFile       = flag.String("tls-key", "", "PEM private key of --tls-cert")
		apiFD         = flag.Int("api-fd", 0, "an inherited listening TCP socket (file descriptor) on which the REST API is also served, over plain HTTP; for a loopback listener in another network namespace")
		authKeyFile   = flag.String("auth-key-file", "", "file holding the one auth key nodes must register with")
		apiKeyFile    = flag.String("api-key-file", "", "file holding the one API key the REST API accepts")
		clientID      = flag.String("oauth-client-id", "", "the one OAuth client ID the token endpoint accepts")
		clientSecFile = flag.String("oauth-client-secret-file", "", "file holding the secret of --oauth-client-id")
		tailnet       = flag.String("tailnet", "stargate.test", "the tailnet's name; the REST API accepts it and \"-\"")
		verbose       = flag.Bool("v", false, "log testcontrol's details")
	)
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if err := run(config{
		listen: *listen, stunListen: *stunListen, certFile: *certFile, keyFile: *keyFile, apiFD: *apiFD,
		authKeyFile: *authKeyFile, apiKeyFile: *apiKeyFile, clientID: *clientID, clientSecretFile: *clientSecFile,
		tailnet: *tailnet, verbose: *verbose,
	}); err != nil {
		log.Fatalf("tailcontrol: %v", err)
	}
}

type config struct {
	listen, stunListen, certFile, keyFile string
	apiFD                                 int
	authKeyFile, apiKeyFile, clientID     string
	clientSecretFile, tailnet             string
	verbose                               bool
}

func readSecret(flagName, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flagName, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("--%s: %s is empty", flagName, path)
	}
	return s, nil
}

func run(c config) error {
	var errs []error
	if c.listen == "" {
		errs = append(errs, errors.New("--listen is required"))
	}
	if c.certFile == "" || c.keyFile == "" {
		errs = append(errs, errors.New("--tls-cert and --tls-key are required"))
	}
	if c.authKeyFile == "" {
		errs = append(errs, errors.New("--auth-key-file is required"))
	}
	if (c.clientID == "") != (c.clientSecretFile == "") {
		errs = append(errs, errors.New("--oauth-client-id and --oauth-client-secret-file go together"))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	authKey, err := readSecret("auth-key-file", c.authKeyFile)
	if err != nil {
		return err
	}
	apiKey, err := readSecret("api-key-file", c.apiKeyFile)
	if err != nil {
		return err
	}
	clientSecret, err := readSecret("oauth-client-secret-file", c.clientSecretFile)
	if err != nil {
		return err
	}
	host, portStr, err := net.SplitHostPort(c.listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", c.listen, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is4() {
		return fmt.Errorf("--listen %q: the host must be an IPv4 address (it goes into the DERP map)", c.listen)
	}
	port, _ := strconv.Atoi(portStr)
	if c.stunListen == "" {
		c.stunListen = net.JoinHostPort(host, "3478")
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load --tls-cert and --tls-key: %w", err)
	}

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.listen, err)
	}
	pc, err := net.ListenPacket("udp4", c.stunListen)
	if err != nil {
		return fmt.Errorf("listen for STUN on %s: %w", c.stunListen, err)
	}
	stunPort := pc.LocalAddr().(*net.UDPAddr).Port
	var apiLn net.Listener
	if c.apiFD > 0 {
		f := os.NewFile(uintptr(c.apiFD), "api-listener")
		apiLn, err = net.FileListener(f)
		if err != nil {
			return fmt.Errorf("--api-fd %d: %w", c.apiFD, err)
		}
		f.Close()
	}

	logf := func(format string, args ...any) {
		if c.verbose {
			log.Printf(format, args...)
		}
	}
	derp := derpserver.New(key.NewNode(), logf)
	defer derp.Close()
	baseURL := "https://" + host
	if port != 443 {
		baseURL = "https://" + c.listen
	}
	shim := newShim(apiKey, c.clientID, clientSecret, c.tailnet)
	control := &testcontrol.Server{
		Logf:             logf,
		RequireAuthKey:   authKey,
		ExplicitBaseURL:  baseURL,
		AllNodesSameUser: true,
		AllOnline:        true,
		DERPMap: &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
			1: {RegionID: 1, RegionCode: "stargate", RegionName: "Stargate test world", Nodes: []*tailcfg.DERPNode{{
				Name: "1a", RegionID: 1, HostName: host, IPv4: host, IPv6: "none",
				STUNPort: stunPort, DERPPort: port, STUNTestIP: host,
				// The control's certificate is self-signed: the nodes
				// trust it through SSL_CERT_FILE for control, and DERP
				// skips the check.
				InsecureForTests: true,
			}}},
		}},
		HoldMapRequest: func(*tailcfg.MapRequest) func() {
			// A map request may carry a new advertisement
			// (Hostinfo.RoutableIPs): look again once it is stored.
			return shim.poke
		},
	}
	shim.control = control

	mux := http.NewServeMux()
	mux.Handle("/api/v2/", shim)
	mux.Handle("/derp", derpserver.Handler(derp))
	mux.HandleFunc("/derp/probe", derpserver.ProbeHandler)
	mux.HandleFunc("/derp/latency-check", derpserver.ProbeHandler)
	// testcontrol panics on any path it does not know: only its own go there.
	for _, p := range []string{"/key", "/machine/", "/ts2021", "/generate_204", "/c2n/"} {
		mux.Handle(p, control)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go shim.syncLoop(ctx)
	go serveSTUN(pc)

	srv := &http.Server{
		Handler: mux,
		// DERP and control's ts2021 upgrade the connection: HTTP/1.1 only.
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(logWriter{c.verbose}, "", 0),
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.ServeTLS(ln, "", "") }()
	var apiSrv *http.Server
	if apiLn != nil {
		apiMux := http.NewServeMux()
		apiMux.Handle("/api/v2/", shim)
		apiSrv = &http.Server{Handler: apiMux, ReadHeaderTimeout: 10 * time.Second}
		go func() { serveErr <- apiSrv.Serve(apiLn) }()
		log.Printf("REST API on http://%s", apiLn.Addr())
	}
	log.Printf("control, DERP and REST API on %s; STUN on %s; tailnet %q", baseURL, pc.LocalAddr(), c.tailnet)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return err
	}
	pc.Close()
	srv.Close()
	if apiSrv != nil {
		apiSrv.Close()
	}
	return nil
}

// logWriter drops the http.Server's complaints (TLS handshakes that
// tailscaled aborts, DERP probes) unless -v.
type logWriter struct{ on bool }

func (l logWriter) Write(p []byte) (int, error) {
	if l.on {
		log.Print(string(p))
	}
	return len(p), nil
}

func serveSTUN(pc net.PacketConn) {
	buf := make([]byte, 64<<10)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		txid, err := stun.ParseBindingRequest(buf[:n])
		if err != nil {
			continue
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		_, _ = pc.WriteTo(stun.Response(txid, ua.AddrPort()), addr)
	}
}

// shim is the REST API v2 on testcontrol's state.
type shim struct {
	control                        *testcontrol.Server
	apiKey, clientID, clientSecret string
	tailnet                        string
	changed                        chan struct{}

	// syncMu makes syncs one at a time, so that an older view of the
	// enabled routes never overwrites a newer one in testcontrol.
	syncMu  sync.Mutex
	mu      sync.Mutex
	tokens  map[string]time.Time      // OAuth access token -> expiry
	enabled map[string][]netip.Prefix // StableID -> enabled routes
	pushed  map[string][]netip.Prefix // StableID -> routes given to testcontrol
}

func newShim(apiKey, clientID, clientSecret, tailnet string) *shim {
	return &shim{
		apiKey: apiKey, clientID: clientID, clientSecret: clientSecret, tailnet: tailnet,
		changed: make(chan struct{}, 1),
		tokens:  map[string]time.Time{},
		enabled: map[string][]netip.Prefix{},
		pushed:  map[string][]netip.Prefix{},
	}
}

func (s *shim) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// syncLoop gives testcontrol advertised ∩ enabled for every node whenever
// something may have changed, and every 200ms in case a change came by a
// path without a hook.
func (s *shim) syncLoop(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.changed:
		case <-t.C:
		}
		s.sync()
	}
}

func (s *shim) sync() {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	for _, n := range s.control.AllNodes() {
		id := string(n.StableID)
		var advertised []netip.Prefix
		if n.Hostinfo.Valid() {
			advertised = n.Hostinfo.RoutableIPs().AsSlice()
		}
		s.mu.Lock()
		var want []netip.Prefix
		for _, p := range s.enabled[id] {
			if slices.Contains(advertised, p) {
				want = append(want, p)
			}
		}
		prev, seen := s.pushed[id]
		same := seen && slices.Equal(prev, want)
		if !same {
			s.pushed[id] = want
		}
		s.mu.Unlock()
		if !same {
			log.Printf("device %s (%s): routes served %v (advertised %v)", id, n.Hostinfo.Hostname(), want, advertised)
			s.control.SetSubnetRoutes(n.Key, want)
		}
	}
}

func (s *shim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/api/v2/")
	if path == "oauth/token" {
		s.token(w, r)
		return
	}
	if !s.authorized(r) {
		writeErr(w, http.StatusUnauthorized, "API token invalid")
		return
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) == 3 && parts[0] == "tailnet" && parts[2] == "devices":
		if parts[1] != "-" && parts[1] != s.tailnet {
			writeErr(w, http.StatusNotFound, fmt.Sprintf("tailnet %q not found", parts[1]))
			return
		}
		if r.Method != http.MethodGet {
			writeErr(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		s.listDevices(w, r)
	case len(parts) == 3 && parts[0] == "device" && parts[2] == "routes":
		s.routes(w, r, parts[1])
	default:
		writeErr(w, http.StatusNotFound, "not found")
	}
}

func (s *shim) authorized(r *http.Request) bool {
	if user, _, ok := r.BasicAuth(); ok {
		return s.apiKey != "" && equal(user, s.apiKey)
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	if s.apiKey != "" && equal(tok, s.apiKey) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[tok]
	return ok && time.Now().Before(exp)
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// token is the OAuth 2.0 client-credentials grant (RFC 6749 4.4); the
// client authenticates with HTTP basic or in the form, as golang.org/x/oauth2
// tries both.
func (s *shim) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeErr(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_request")
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		oauthErr(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if s.clientID == "" || !equal(id, s.clientID) || !equal(secret, s.clientSecret) {
		oauthErr(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := "tskey-api-test-" + hex.EncodeToString(b)
	const lifetime = time.Hour
	s.mu.Lock()
	s.tokens[tok] = time.Now().Add(lifetime)
	s.mu.Unlock()
	writeJSON(w, map[string]any{
		"access_token": tok, "token_type": "Bearer",
		"expires_in": int(lifetime.Seconds()), "scope": r.PostForm.Get("scope"),
	})
}

type device struct {
	Addresses          []string  `json:"addresses"`
	ID                 string    `json:"id"`
	NodeID             string    `json:"nodeId"`
	User               string    `json:"user"`
	Name               string    `json:"name"`
	Hostname           string    `json:"hostname"`
	ClientVersion      string    `json:"clientVersion"`
	OS                 string    `json:"os"`
	Created            time.Time `json:"created"`
	Expires            string    `json:"expires"`
	KeyExpiryDisabled  bool      `json:"keyExpiryDisabled"`
	Authorized         bool      `json:"authorized"`
	IsExternal         bool      `json:"isExternal"`
	MachineKey         string    `json:"machineKey"`
	NodeKey            string    `json:"nodeKey"`
	Tags               []string  `json:"tags,omitempty"`
	ConnectedToControl bool      `json:"connectedToControl"`
	AdvertisedRoutes   *[]string `json:"advertisedRoutes,omitempty"`
	EnabledRoutes      *[]string `json:"enabledRoutes,omitempty"`
}

func (s *shim) listDevices(w http.ResponseWriter, r *http.Request) {
	all := r.URL.Query().Get("fields") == "all"
	out := []device{}
	for _, n := range s.control.AllNodes() {
		d := device{
			ID:                 strconv.FormatInt(int64(n.ID), 10),
			NodeID:             string(n.StableID),
			User:               "stargate@" + s.tailnet,
			Hostname:           n.Hostinfo.Hostname(),
			Name:               n.Hostinfo.Hostname() + "." + s.tailnet,
			ClientVersion:      n.Hostinfo.IPNVersion(),
			OS:                 n.Hostinfo.OS(),
			Created:            n.Created,
			Expires:            "",
			KeyExpiryDisabled:  n.KeyExpiry.IsZero(),
			Authorized:         n.MachineAuthorized,
			MachineKey:         n.Machine.String(),
			NodeKey:            n.Key.String(),
			Tags:               n.Tags,
			ConnectedToControl: true,
		}
		if !n.KeyExpiry.IsZero() {
			d.Expires = n.KeyExpiry.UTC().Format(time.RFC3339)
		}
		for _, a := range n.Addresses {
			d.Addresses = append(d.Addresses, a.Addr().String())
		}
		if all {
			adv, en := s.routesOf(n)
			d.AdvertisedRoutes, d.EnabledRoutes = &adv, &en
		}
		out = append(out, d)
	}
	writeJSON(w, map[string]any{"devices": out})
}

// routesOf returns what the node advertises and what is enabled for it.
func (s *shim) routesOf(n *tailcfg.Node) (advertised, enabled []string) {
	advertised = []string{}
	if n.Hostinfo.Valid() {
		for _, p := range n.Hostinfo.RoutableIPs().All() {
			advertised = append(advertised, p.String())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	enabled = []string{}
	for _, p := range s.enabled[string(n.StableID)] {
		enabled = append(enabled, p.String())
	}
	return advertised, enabled
}

// node finds a device by its nodeId or its numeric id, as the API does.
func (s *shim) node(id string) *tailcfg.Node {
	for _, n := range s.control.AllNodes() {
		if string(n.StableID) == id || strconv.FormatInt(int64(n.ID), 10) == id {
			return n
		}
	}
	return nil
}

func (s *shim) routes(w http.ResponseWriter, r *http.Request, id string) {
	n := s.node(id)
	if n == nil {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("device %q not found", id))
		return
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		var body struct {
			Routes []string `json:"routes"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeErr(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
			return
		}
		var enabled []netip.Prefix
		for _, rt := range body.Routes {
			p, err := netip.ParsePrefix(rt)
			if err != nil {
				writeErr(w, http.StatusBadRequest, fmt.Sprintf("invalid route %q: %v", rt, err))
				return
			}
			if p != p.Masked() {
				writeErr(w, http.StatusBadRequest, fmt.Sprintf("invalid route %q: host bits set", rt))
				return
			}
			if !slices.Contains(enabled, p) {
				enabled = append(enabled, p)
			}
		}
		slices.SortFunc(enabled, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		s.mu.Lock()
		s.enabled[string(n.StableID)] = enabled
		s.mu.Unlock()
		log.Printf("device %s (%s): routes enabled %v", n.StableID, n.Hostinfo.Hostname(), enabled)
		s.sync()
	default:
		writeErr(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	adv, en := s.routesOf(n)
	writeJSON(w, map[string][]string{"advertisedRoutes": adv, "enabledRoutes": en})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"message": msg})
}

func oauthErr(w http.ResponseWriter, code int, e string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": e})
}
