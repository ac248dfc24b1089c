package operations

import (
	"regexp"
	"strings"
	"sync"

	"github.com/stargate-k8s/stargate/pkg/bootstrap"
)

// redacted replaces a secret in output, messages and logs.
const redacted = "[REDACTED]"

// Bootstrap tokens look alike everywhere; redact any, not only ours.
var tokenPattern = regexp.MustCompile(`\b[a-z0-9]{6}\.[a-z0-9]{16}\b`)

// redactor removes the secrets of one Operation from text.
type redactor struct {
	mu      sync.Mutex
	secrets []string
}

func newRedactor() *redactor { return &redactor{} }

func (r *redactor) add(s string) {
	if len(s) < 8 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets = append(r.secrets, s)
}

// AddToken redacts the token and its secret half.
func (r *redactor) AddToken(t bootstrap.Token) {
	r.add(t.String())
	r.add(t.Secret)
}

// AddPrivateKey redacts every line of a private key.
func (r *redactor) AddPrivateKey(pem []byte) {
	for _, l := range strings.Split(string(pem), "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "-----") {
			r.add(l)
		}
	}
}

// String returns s with every known secret and anything shaped like a
// bootstrap token or a private key block replaced.
func (r *redactor) String(s string) string {
	r.mu.Lock()
	secrets := r.secrets
	r.mu.Unlock()
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, redacted)
	}
	s = tokenPattern.ReplaceAllString(s, redacted)
	if i := strings.Index(s, "PRIVATE KEY-----"); i >= 0 {
		s = privateKeyBlock.ReplaceAllString(s, redacted)
	}
	return s
}

var privateKeyBlock = regexp.MustCompile(`(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)`)

// tail keeps the last lines of output, redacted, within a byte bound.
type tail struct {
	max    int
	lines  []string
	size   int
	redact *redactor
}

func newTail(max int, r *redactor) *tail { return &tail{max: max, redact: r} }

// Add appends a line.
func (t *tail) Add(line string) {
	line = t.redact.String(line)
	if len(line) > t.max {
		line = "…" + line[len(line)-t.max+len("…"):]
	}
	t.lines = append(t.lines, line)
	t.size += len(line) + 1
	for t.size > t.max && len(t.lines) > 1 {
		t.size -= len(t.lines[0]) + 1
		t.lines = t.lines[1:]
	}
}

func (t *tail) String() string { return strings.Join(t.lines, "\n") }
