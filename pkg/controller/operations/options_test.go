package operations

import (
	"strings"
	"testing"

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
