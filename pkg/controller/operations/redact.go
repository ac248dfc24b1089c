package operations

import (
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/stargate-k8s/stargate/pkg/bootstrap"
)

// redacted replaces a secret in output, messages and logs.
const redacted = "[REDACTED]"

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

// AddSecret redacts s (one line: an auth key).
func (r *redactor) AddSecret(s string) { r.add(s) }

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
	s = redactTokens(s)
	if strings.Contains(s, "tskey-") {
		s = tailscaleKey.ReplaceAllString(s, redacted)
	}
	if strings.Contains(s, "PRIVATE KEY-----") {
		s = privateKeyBlock.ReplaceAllString(s, redacted)
	}
	return s
}

var (
	// tailscaleKey is the shape of Tailscale's auth keys and API keys
	// (tskey-auth-..., tskey-api-...).
	tailscaleKey    = regexp.MustCompile(`tskey-[A-Za-z0-9_-]+`)
	privateKeyBlock = regexp.MustCompile(`(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)`)
	privateKeyEnd   = regexp.MustCompile(`-----END [A-Z ]*PRIVATE KEY-----`)
)

// opensPrivateKey says whether line starts a private key block that it
// does not end: the lines after it are the key.
func opensPrivateKey(line string) bool {
	if !strings.Contains(line, "PRIVATE KEY-----") {
		return false
	}
	m := privateKeyBlock.FindAllStringSubmatchIndex(line, -1)
	if len(m) == 0 {
		return false
	}
	last := m[len(m)-1]
	return last[3] == last[2] // ended by the end of the line, not by an END line
}

// Bootstrap tokens look alike everywhere, [a-z0-9]{6}.[a-z0-9]{16}
// (kubeadm's and bootstrap's own format); redact any, not only ours.
const (
	tokenIDLength     = 6
	tokenSecretLength = 16
)

func isTokenChar(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// redactTokens replaces everything shaped like a bootstrap token. A token
// ends where the token alphabet does, not where a regexp word does
// (\b): "TOKEN_abcdef.0123456789abcdef" or a URL's "%3Dabcdef.…" hold a
// token, though a letter or '_' stands right before it.
func redactTokens(s string) string {
	var b strings.Builder
	last := 0
	for i := strings.IndexByte(s, '.'); i >= 0; {
		start, end := i-tokenIDLength, i+1+tokenSecretLength
		if start >= last && end <= len(s) && (start == 0 || !isTokenChar(s[start-1])) && (end == len(s) || !isTokenChar(s[end])) &&
			allTokenChars(s[start:i]) && allTokenChars(s[i+1:end]) {
			b.WriteString(s[last:start])
			b.WriteString(redacted)
			last = end
		}
		next := strings.IndexByte(s[i+1:], '.')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func allTokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// tail keeps the last lines of output, redacted, within a byte bound.
// It sees the output a line at a time, so it remembers when a line opened
// a private key block and drops the lines of the key up to the END line:
// redacting each line alone would keep all but the BEGIN line.
type tail struct {
	max    int
	lines  []string
	size   int
	redact *redactor
	inKey  bool
}

// newTail keeps at most limit bytes; less than nothing is nothing.
func newTail(limit int, r *redactor) *tail { return &tail{max: max(limit, 0), redact: r} }

// Add appends a line.
func (t *tail) Add(line string) {
	if t.inKey {
		end := privateKeyEnd.FindStringIndex(line)
		if end == nil {
			return
		}
		t.inKey = false
		if line = line[end[1]:]; strings.TrimSpace(line) == "" {
			return
		}
	}
	t.inKey = opensPrivateKey(line)
	line = t.redact.String(line)
	if len(line) > t.max {
		// Cutting may leave a token-shaped rest, now with the cut as its
		// boundary: redact once more (it never grows: every secret is
		// already gone, and a token is longer than its replacement).
		line = t.redact.String(cutFront(line, t.max))
	}
	t.lines = append(t.lines, line)
	t.size += len(line) + 1
	for t.size > t.max && len(t.lines) > 1 {
		t.size -= len(t.lines[0]) + 1
		t.lines = t.lines[1:]
	}
}

// cutFront keeps the end of s within max bytes, marked with "…" when
// there is room for it, starting at a whole UTF-8 character.
func cutFront(s string, max int) string {
	const ellipsis = "…"
	if max <= len(ellipsis) {
		return trimToRune(s[len(s)-max:])
	}
	return ellipsis + trimToRune(s[len(s)-max+len(ellipsis):])
}

// trimToRune drops the rest of a character cut in two at the start of s.
func trimToRune(s string) string {
	for i := 0; i < utf8.UTFMax; i++ {
		if i == len(s) {
			return ""
		}
		if utf8.RuneStart(s[i]) {
			return s[i:]
		}
	}
	return s // not UTF-8 to begin with
}

func (t *tail) String() string { return strings.Join(t.lines, "\n") }
