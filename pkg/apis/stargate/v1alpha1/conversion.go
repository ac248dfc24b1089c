package v1alpha1

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
)

func init() {
	localSchemeBuilder.Register(addFieldLabelConversionFuncs)
}

// selectableFields lists, per kind, the fields besides metadata.name and
// metadata.namespace that list and watch can select on.
var selectableFields = map[string][]string{
	"Datacenter":          {"spec.namespace"},
	"Server":              {"spec.hostname", "spec.ipAddress", "spec.routerIP", "status.phase", "status.nodeName"},
	"Operation":           {"spec.serverRef.name", "spec.operation", "status.phase"},
	"ProvisioningProfile": nil,
	"ServerRollout":       nil,
}

func addFieldLabelConversionFuncs(scheme *runtime.Scheme) error {
	for kind, extra := range selectableFields {
		allowed := map[string]bool{"metadata.name": true, "metadata.namespace": true}
		for _, f := range extra {
			allowed[f] = true
		}
		kind := kind
		err := scheme.AddFieldLabelConversionFunc(SchemeGroupVersion.WithKind(kind), func(label, value string) (string, string, error) {
			if allowed[label] {
				return label, value, nil
			}
			return "", "", fmt.Errorf("field label %q is not supported for %s", label, kind)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
