package v1alpha1

// The original Stargate (github.com/vpatelsj/stargate, CRD-based) wrote
// some fields differently; its manifests are accepted as they are and mean
// what they meant there. See docs/migrating-from-stargate.md.

import (
	"bytes"
	"fmt"
	"strings"

	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// DefaultAdminUsername is the SSH user of a profile that names none: the
// original Stargate's default.
const DefaultAdminUsername = "ubuntu"

// UnmarshalJSON accepts a reference as an object, {"name": "x"}, or, as
// the original Stargate wrote sshCredentialsSecretRef and
// tailscaleAuthKeySecretRef, as the plain name "x". The server always
// writes the object form.
//
// Inside the object form, fields other than name are dropped, as a client
// drops fields it does not know, even when the request asks for strict
// field validation: a reference has one field.
func (r *LocalObjectReference) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		// As for any other type: null leaves the value as it is.
		return nil
	case len(data) > 0 && data[0] == '"':
		var name string
		if err := utiljson.Unmarshal(data, &name); err != nil {
			return err
		}
		*r = LocalObjectReference{Name: name}
		return nil
	case len(data) > 0 && data[0] == '{':
		// A type without this method, decoded case-sensitively as the API
		// server decodes everything else.
		type object LocalObjectReference
		var o object
		if err := utiljson.Unmarshal(data, &o); err != nil {
			return fmt.Errorf("a reference must be {\"name\": NAME} or the plain name: %w", err)
		}
		*r = LocalObjectReference(o)
		return nil
	default:
		return fmt.Errorf("a reference must be an object {\"name\": NAME} or the plain name as a string, not %s", truncate(data, 64))
	}
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}

// knownOperations are the Operation types, for normalizeOperationType.
var knownOperations = []OperationType{OperationRepave, OperationReboot, OperationDecommission}

// normalizeOperationType returns the Operation type t names in any case:
// the original Stargate wrote "repave" and "reboot". Other values are
// returned as they are, for validation to refuse.
func normalizeOperationType(t OperationType) OperationType {
	for _, k := range knownOperations {
		if strings.EqualFold(string(t), string(k)) {
			return k
		}
	}
	return t
}
