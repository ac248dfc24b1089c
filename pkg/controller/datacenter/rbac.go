package datacenter

import (
	"fmt"
	"strings"
)

// ClusterRole is what the admin binds to ControllerServiceAccount in each
// datacenter namespace (artifacts/datacenter/rbac.yaml) so
// stargate-controller may read the Secrets and ConfigMaps its
// ProvisioningProfiles name.
const (
	ClusterRole              = "stargate-controller-datacenter"
	ControllerServiceAccount = "stargate-system/stargate-controller"
)

// BindHint says how the admin lets stargate-controller read what a
// datacenter's profiles name in namespace ns: the fix for a Forbidden read.
func BindHint(ns string) string {
	return fmt.Sprintf("bind ClusterRole %s to ServiceAccount %s in namespace %s (artifacts/datacenter/rbac.yaml: kubectl create rolebinding stargate-controller -n %s --clusterrole=%s --serviceaccount=%s)",
		ClusterRole, ControllerServiceAccount, ns, ns, ClusterRole, strings.Replace(ControllerServiceAccount, "/", ":", 1))
}
