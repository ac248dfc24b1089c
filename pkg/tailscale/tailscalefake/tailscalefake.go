// Package tailscalefake is an httptest server implementing the parts of the
// Tailscale /api/v2 that Stargate uses: the OAuth client-credentials token
// endpoint, the device list (with fields=all), and GET/POST of a device's
// routes. It records every request. It listens on loopback only.
package tailscalefake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Request is one recorded request.
type Request struct {
	Method, Path, Query string
	// Body is the request body for POSTs.
	Body string
	// Auth is "bearer", "basic" or "".
	Auth string
}

// Device is a tailnet device of the fake.
type Device struct {
	NodeID     string
	Name       string
	Addresses  []string
	Advertised []string
	Enabled    []string
}

// Server is the fake API.
type Server struct {
	*httptest.Server
	// APIKey, ClientID and ClientSecret are the accepted credentials.
	APIKey, ClientID, ClientSecret string
	// ReadLatency and WriteLatency are slept per call.
	ReadLatency, WriteLatency time.Duration

	mu       sync.Mutex
	devices  map[string]*Device
	requests []Request
	tokens   map[string]bool
}

// New starts a fake accepting the given API key and OAuth client.
func New(apiKey, clientID, clientSecret string) *Server {
	s := &Server{APIKey: apiKey, ClientID: clientID, ClientSecret: clientSecret, devices: map[string]*Device{}, tokens: map[string]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// AddDevice adds or replaces a device.
func (s *Server) AddDevice(d Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := d
	s.devices[d.NodeID] = &c
}

// Device returns a copy of a device.
func (s *Server) Device(id string) Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := *s.devices[id]
	d.Advertised, d.Enabled = slices.Clone(d.Advertised), slices.Clone(d.Enabled)
	return d
}

// SetAdvertised sets what a device advertises (the router's side).
func (s *Server) SetAdvertised(id string, routes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices[id].Advertised = sortedCopy(routes)
}

// SetAdvertisedByIP is SetAdvertised for the device with the tailnet IP.
func (s *Server) SetAdvertisedByIP(ip string, routes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		if slices.Contains(d.Addresses, ip) {
			d.Advertised = sortedCopy(routes)
			return nil
		}
	}
	return fmt.Errorf("no device with IP %s", ip)
}

// SetEnabled sets a device's enabled routes out of band (drift).
func (s *Server) SetEnabled(id string, routes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices[id].Enabled = sortedCopy(routes)
}

// Requests returns the recorded requests.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Writes counts recorded POSTs to device routes.
func (s *Server) Writes() int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/routes") {
			n++
		}
	}
	return n
}

func sortedCopy(ss []string) []string {
	out := slices.Clone(ss)
	sort.Strings(out)
	return out
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery}
	if r.Method == http.MethodPost {
		_ = r.ParseForm()
		if r.URL.Path == "/api/v2/oauth/token" {
			rec.Body = "grant_type=" + r.PostForm.Get("grant_type") + "&client_id=" + r.PostForm.Get("client_id")
		}
	}
	if r.URL.Path == "/api/v2/oauth/token" {
		s.record(rec)
		s.token(w, r)
		return
	}
	rec.Auth = s.auth(r)
	if rec.Auth == "" {
		s.record(rec)
		writeErr(w, http.StatusUnauthorized, "API token invalid")
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodGet && len(parts) == 5 && parts[2] == "tailnet" && parts[4] == "devices":
		s.record(rec)
		s.sleep(s.ReadLatency)
		s.list(w, r)
	case len(parts) == 5 && parts[2] == "device" && parts[4] == "routes":
		var body struct {
			Routes []string `json:"routes"`
		}
		if r.Method == http.MethodPost {
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				s.record(rec)
				writeErr(w, http.StatusBadRequest, err.Error())
				return
			}
			b, _ := json.Marshal(body)
			rec.Body = string(b)
		}
		s.record(rec)
		s.routes(w, r, parts[3], body.Routes)
	default:
		s.record(rec)
		writeErr(w, http.StatusNotFound, "not found")
	}
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
}

func (s *Server) sleep(d time.Duration) {
	if d > 0 {
		time.Sleep(d)
	}
}

func (s *Server) auth(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.tokens[tok] {
			return "bearer"
		}
		return ""
	}
	if user, _, ok := r.BasicAuth(); ok && s.APIKey != "" && user == s.APIKey {
		return "basic"
	}
	return ""
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if r.Method != http.MethodPost || r.PostForm.Get("grant_type") != "client_credentials" || id != s.ClientID || secret != s.ClientSecret || s.ClientID == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	s.mu.Lock()
	tok := fmt.Sprintf("tskey-api-fake-%d", len(s.tokens)+1)
	s.tokens[tok] = true
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600, "scope": r.PostForm.Get("scope")})
}

type apiDevice struct {
	Addresses        []string `json:"addresses"`
	ID               string   `json:"id"`
	NodeID           string   `json:"nodeId"`
	Name             string   `json:"name"`
	Hostname         string   `json:"hostname"`
	Authorized       bool     `json:"authorized"`
	AdvertisedRoutes []string `json:"advertisedRoutes,omitempty"`
	EnabledRoutes    []string `json:"enabledRoutes,omitempty"`
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	all := r.URL.Query().Get("fields") == "all"
	s.mu.Lock()
	ids := make([]string, 0, len(s.devices))
	for id := range s.devices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]apiDevice, 0, len(ids))
	for _, id := range ids {
		d := s.devices[id]
		ad := apiDevice{Addresses: d.Addresses, ID: d.NodeID, NodeID: d.NodeID, Name: d.Name, Hostname: strings.Split(d.Name, ".")[0], Authorized: true}
		if all {
			ad.AdvertisedRoutes = nonNil(d.Advertised)
			ad.EnabledRoutes = nonNil(d.Enabled)
		}
		out = append(out, ad)
	}
	s.mu.Unlock()
	writeJSON(w, map[string]any{"devices": out})
}

func (s *Server) routes(w http.ResponseWriter, r *http.Request, id string, enable []string) {
	if r.Method == http.MethodPost {
		s.sleep(s.WriteLatency)
	} else {
		s.sleep(s.ReadLatency)
	}
	s.mu.Lock()
	d, ok := s.devices[id]
	if !ok {
		s.mu.Unlock()
		writeErr(w, http.StatusNotFound, "device not found")
		return
	}
	switch r.Method {
	case http.MethodPost:
		// The API replaces the enabled set; routes may be enabled before
		// they are advertised.
		d.Enabled = sortedCopy(enable)
	case http.MethodGet:
	default:
		s.mu.Unlock()
		writeErr(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	resp := map[string][]string{"advertisedRoutes": nonNil(d.Advertised), "enabledRoutes": nonNil(d.Enabled)}
	s.mu.Unlock()
	writeJSON(w, resp)
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return slices.Clone(ss)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"message": msg, "status": code})
}
