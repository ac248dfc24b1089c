package operations

import (
	"strings"
	"testing"
	"time"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/validation"
)

// --output-tail-bytes beyond the API's bound of status.outputTail would
// make every status write of an Operation fail: refused at start.
func TestOptionsValidateOutputTailBytes(t *testing.T) {
	for _, tc := range []struct {
		n       int
		wantErr bool
	}{
		{4096, false},
		{validation.MaxOutputTailLength, false},
		{validation.MaxOutputTailLength + 1, true},
		{0, true},
		{-1, true},
	} {
		o := NewOptions()
		o.APIServerURL = "https://192.0.2.1:6443"
		o.OutputTailBytes = tc.n
		err := o.Validate()
		if (err != nil) != tc.wantErr {
			t.Errorf("--output-tail-bytes=%d: err = %v, want error %v", tc.n, err, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "--output-tail-bytes") {
			t.Errorf("--output-tail-bytes=%d: error does not name the flag: %v", tc.n, err)
		}
	}
}

// A bootstrap token lives as long as a repave can use it and no longer:
// the script timeout, the wait for the Node and a minute. A shorter
// explicit lifetime is refused at start.
func TestTokenLifetimeFollowsTheTimeouts(t *testing.T) {
	o := NewOptions()
	o.APIServerURL = "https://192.0.2.1:6443"
	o.ScriptTimeout, o.NodeReadyTimeout = 20*time.Minute, 5*time.Minute
	if got, want := o.TokenLifetime(), 26*time.Minute; got != want {
		t.Errorf("default token lifetime %s, want %s", got, want)
	}
	o.TokenTTL = 2 * time.Hour
	if got := o.TokenLifetime(); got != 2*time.Hour {
		t.Errorf("explicit --bootstrap-token-ttl gives %s", got)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("a lifetime longer than the timeouts is refused: %v", err)
	}
	o.TokenTTL = 10 * time.Minute
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--bootstrap-token-ttl") {
		t.Errorf("a lifetime shorter than the timeouts: err = %v", err)
	}
}
