package operations

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stargate-k8s/stargate/pkg/bootstrap"
)

// fuzzToken makes a bootstrap token, in the token alphabet, from seed.
func fuzzToken(seed []byte, salt string) bootstrap.Token {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	sum := sha256.Sum256(append([]byte(salt), seed...))
	b := make([]byte, tokenIDLength+tokenSecretLength)
	for i := range b {
		b[i] = alphabet[int(sum[i])%len(alphabet)]
	}
	return bootstrap.Token{ID: string(b[:tokenIDLength]), Secret: string(b[tokenIDLength:])}
}

// fuzzKey makes a PEM block of a private key, 70 base64 characters a
// line as OpenSSH writes them, whose body comes from seed; the block has
// no newline after its END line.
func fuzzKey(kind string, seed []byte, salt string) (block string, body []string) {
	var raw []byte
	for i := 0; len(raw) < 100+len(seed)%400; i++ {
		sum := sha256.Sum256(append([]byte(salt+string(rune('a'+i%26))), seed...))
		raw = append(raw, sum[:]...)
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 70 {
		body, enc = append(body, enc[:70]), enc[70:]
	}
	body = append(body, enc)
	return "-----BEGIN " + kind + " PRIVATE KEY-----\n" + strings.Join(body, "\n") + "\n-----END " + kind + " PRIVATE KEY-----", body
}

// chunkReader hands out its data a few bytes at a time, as an SSH session
// does, so lines and secrets arrive split across reads.
type chunkReader struct {
	data string
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.data == "" {
		return 0, io.EOF
	}
	n := min(c.n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

var tokenRE = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

// tokenShaped returns the first bootstrap token in s, or "": 23 characters
// of the token's form, with no character of the token alphabet on either
// side. It is written apart from redactTokens, to check it.
func tokenShaped(s string) string {
	const n = 6 + 1 + 16
	alnum := func(c byte) bool { return strings.IndexByte("abcdefghijklmnopqrstuvwxyz0123456789", c) >= 0 }
	for i := 0; i+n <= len(s); i++ {
		if (i == 0 || !alnum(s[i-1])) && (i+n == len(s) || !alnum(s[i+n])) && tokenRE.MatchString(s[i:i+n]) {
			return s[i : i+n]
		}
	}
	return ""
}

// FuzzRedactOutput runs script output the fuzzer writes, with our
// bootstrap token, its secret half, our SSH private key, another token and
// another private key embedded in it, through the redacted output tail the
// way the repave reconciler streams it (a line scanner over reads of a
// few bytes, a byte bound) and through the redactor as messages use it.
// None of our secrets, no token-shaped string and no line of any private
// key may come out; the tail stays within its bound and keeps valid UTF-8
// valid.
func FuzzRedactOutput(f *testing.F) {
	f.Add("Setting up kubelet ...\n", "kubeadm join --token ", " --discovery-token-ca-cert-hash sha256:abc\nkey: ", "\ndone\n", []byte("t"), []byte("k"), uint8(7), uint16(4096))
	f.Add("", "TOKEN_", "%3D", "", []byte{0}, []byte{1, 2, 3}, uint8(0), uint16(40))
	f.Add("x\r\n", "\n", "Xx", "\xff\xfe", []byte("tokenseed"), []byte(strings.Repeat("k", 300)), uint8(1), uint16(3))
	f.Add("-----BEGIN EC PRIVATE KEY-----", "-----END EC PRIVATE KEY-----", ".", "…", []byte("a"), []byte("b"), uint8(31), uint16(0))
	f.Fuzz(func(t *testing.T, before, between, around, after string, tokenSeed, keySeed []byte, chunk uint8, tailMax uint16) {
		if len(before)+len(between)+len(around)+len(after) > 16*1024 {
			return // long lines read a few bytes at a time take the scanner quadratic time
		}
		ours := fuzzToken(tokenSeed, "ours")
		other := fuzzToken(tokenSeed, "other")
		ourKey, _ := fuzzKey("OPENSSH", keySeed, "ours")
		otherKey, otherBody := fuzzKey("RSA", keySeed, "other")
		r := newRedactor()
		r.AddToken(ours)
		r.AddPrivateKey([]byte(ourKey + "\n"))
		// A Tailscale auth key of this Operation's profile, and one
		// printed by something else on the host.
		ourAuthKey := "tskey-auth-k" + hex.EncodeToString(tokenSeed) + "CNTRL-ours"
		otherAuthKey := "tskey-auth-k" + hex.EncodeToString(keySeed) + "CNTRL-other"
		r.AddSecret(ourAuthKey)

		output := before + ours.String() + between + ours.Secret + around + other.String() + around +
			ourKey + between + otherKey + between + ourAuthKey + around + otherAuthKey + after + "\n"

		tl := newTail(int(tailMax), r)
		sc := bootstrap.NewOutputScanner(&chunkReader{data: output, n: int(chunk) + 1})
		for sc.Scan() {
			tl.Add(sc.Text())
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		streamed := tl.String()
		if len(streamed) > int(tailMax) {
			t.Errorf("tail of %d bytes, bound %d", len(streamed), tailMax)
		}
		if utf8.ValidString(output) && !utf8.ValidString(streamed) {
			t.Errorf("tail %q of valid UTF-8 output is not valid UTF-8", streamed)
		}

		fuzzed := before + between + around + after
		for what, out := range map[string]string{"output tail": streamed, "message": r.String(output)} {
			for _, sec := range r.secrets {
				if !strings.Contains(redacted, sec) && strings.Contains(out, sec) {
					t.Fatalf("%s holds secret %q:\n%s", what, sec, out)
				}
			}
			if i := strings.Index(out, "tskey-"); i >= 0 && !strings.Contains(fuzzed, "tskey-") {
				t.Fatalf("%s holds a Tailscale key at %d:\n%s", what, i, out)
			}
			if tok := tokenShaped(out); tok != "" {
				t.Fatalf("%s holds token-shaped %q:\n%s", what, tok, out)
			}
			for _, l := range otherBody {
				if len(l) >= 16 && strings.Contains(out, l) && !strings.Contains(fuzzed, l) {
					t.Fatalf("%s holds line %q of a private key:\n%s", what, l, out)
				}
			}
		}
	})
}

// TestRedactTail pins what the fuzz target found and what it guards.
func TestRedactTail(t *testing.T) {
	const tok = "abcdef.0123456789abcdef"
	cases := []struct {
		name  string
		max   int
		lines []string
		want  string
	}{
		{"a key printed by the script, not ours", 4096,
			[]string{"$ cat /etc/kubernetes/pki/x.key", "-----BEGIN RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEAzVe0", "Z2h0LWxpbmU=", "-----END RSA PRIVATE KEY-----", "done"},
			"$ cat /etc/kubernetes/pki/x.key\n[REDACTED]\ndone"},
		{"output after an END on the same line is kept", 4096,
			[]string{"key: -----BEGIN EC PRIVATE KEY-----", "MHcCAQEEIBk", "-----END EC PRIVATE KEY----- written"},
			"key: [REDACTED]\n written"},
		{"a key that never ends hides the rest", 4096,
			[]string{"-----BEGIN PRIVATE KEY-----", "MIIEvQIBADANBg", "rest"},
			"[REDACTED]"},
		{"a token after a letter or '_'", 4096,
			[]string{"TOKEN_" + tok, "url?t%3D" + tok + "&x=1"},
			"TOKEN_[REDACTED]\nurl?t%3D[REDACTED]&x=1"},
		{"not a token: longer on either side", 4096,
			[]string{"x" + tok, tok + "0"},
			"x" + tok + "\n" + tok + "0"},
		{"a cut that makes a token of the rest", 26,
			[]string{"0123456789x" + tok},
			"…[REDACTED]"},
		{"a cut within a character", 4,
			[]string{"ééé"},
			"…"},
		{"a bound smaller than the ellipsis", 2,
			[]string{"abcdef"},
			"ef"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tl := newTail(tc.max, newRedactor())
			for _, l := range tc.lines {
				tl.Add(l)
			}
			if got := tl.String(); got != tc.want {
				t.Errorf("tail %q, want %q", got, tc.want)
			}
		})
	}
}
