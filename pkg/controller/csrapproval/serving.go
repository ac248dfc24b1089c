package csrapproval

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// Networks are the cluster's own ranges: a kubelet serving certificate
// naming an address in them would let its node pose as a Service (the API
// server's ClusterIP among them) or a pod.
type Networks struct {
	// ServiceCIDR is the Service range (--service-cluster-ip-range).
	ServiceCIDR netip.Prefix
	// PodCIDRPool is the pool the pod CIDRs come from (--pod-cidr-pool).
	PodCIDRPool netip.Prefix
}

// Policy is what a kubelet serving CSR is checked against.
type Policy struct {
	// Server is the one Server whose spec.hostname is the node's name.
	Server *v1.Server
	// Datacenter is the Server's Datacenter, which the Server fits.
	Datacenter *v1.Datacenter
	Networks   Networks
	// OtherServers maps the spec.ipAddress of every other Server, in any
	// namespace, to its namespace/name.
	OtherServers map[netip.Addr]string
}

// IsAPIServerName says whether a DNS name is one of the names the
// cluster's API server is reached by (kubernetes, kubernetes.default,
// kubernetes.default.svc, ...) or any in-cluster Service name (*.svc,
// *.svc.cluster.local, *.cluster.local).
func IsAPIServerName(name string) bool {
	n := strings.TrimSuffix(strings.ToLower(name), ".")
	switch {
	case n == "kubernetes", strings.HasPrefix(n, "kubernetes."):
		return true
	case n == "svc", strings.HasSuffix(n, ".svc"), strings.Contains(n, ".svc."):
		return true
	case n == "cluster.local", strings.HasSuffix(n, ".cluster.local"):
		return true
	}
	return false
}

// Check says whether the serving CSR of nodeName fits the policy, and
// why. Every denial names what was wrong.
func Check(csr *certificatesv1.CertificateSigningRequest, nodeName string, p Policy) (bool, string) {
	server := p.Server
	id := server.Namespace + "/" + server.Name
	if server.Spec.Hostname != nodeName {
		return false, fmt.Sprintf("node %s is not the hostname %s of Server %s", nodeName, server.Spec.Hostname, id)
	}
	if server.Status.NodeName != nodeName {
		return false, fmt.Sprintf("node %s is not the node Stargate bootstrapped for Server %s (status.nodeName %q)", nodeName, id, server.Status.NodeName)
	}
	if p.Datacenter == nil {
		return false, fmt.Sprintf("Server %s has no Datacenter, so no worker subnet its addresses may come from", id)
	}
	subnet, err := netip.ParsePrefix(p.Datacenter.Spec.WorkerSubnet)
	if err != nil {
		return false, fmt.Sprintf("Datacenter %s has no valid worker subnet %q", p.Datacenter.Name, p.Datacenter.Spec.WorkerSubnet)
	}
	x, why := parseRequest(csr)
	if x == nil {
		return false, why
	}
	if x.Subject.CommonName != "system:node:"+nodeName || !slices.Equal(x.Subject.Organization, []string{"system:nodes"}) {
		return false, fmt.Sprintf("subject %q is not system:node:%s in system:nodes", x.Subject.String(), nodeName)
	}
	if len(x.EmailAddresses) > 0 || len(x.URIs) > 0 {
		return false, "the request asks for email or URI names"
	}
	if len(x.DNSNames)+len(x.IPAddresses) == 0 {
		return false, "the request names no DNS name or IP address"
	}
	for _, d := range x.DNSNames {
		if IsAPIServerName(d) {
			return false, fmt.Sprintf("DNS name %q is a name of the cluster's API server or Services, never a node's", d)
		}
		if d != server.Spec.Hostname {
			return false, fmt.Sprintf("DNS name %q is not the Server's hostname %q", d, server.Spec.Hostname)
		}
	}
	for _, ip := range x.IPAddresses {
		if why := checkServingIP(ip, p, subnet); why != "" {
			return false, why
		}
	}
	hasServerAuth := false
	for _, u := range csr.Spec.Usages {
		switch u {
		case certificatesv1.UsageServerAuth:
			hasServerAuth = true
		case certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return false, fmt.Sprintf("usage %q is not one a kubelet serving certificate needs", u)
		}
	}
	if !hasServerAuth {
		return false, "the request lacks usage server auth"
	}
	return true, fmt.Sprintf("names match Server %s, node %s (hostname %s, ipAddress %s in worker subnet %s of Datacenter %s)",
		id, server.Status.NodeName, server.Spec.Hostname, server.Spec.IPAddress, subnet, p.Datacenter.Name)
}

// checkServingIP says what is wrong with an IP SAN, "" when nothing.
func checkServingIP(ip net.IP, p Policy, subnet netip.Prefix) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return fmt.Sprintf("IP address %v cannot be parsed", ip)
	}
	a = a.Unmap()
	n := p.Networks
	switch {
	case n.ServiceCIDR.IsValid() && n.ServiceCIDR.Contains(a):
		return fmt.Sprintf("IP address %s is in the cluster's Service range %s (--service-cluster-ip-range): a node may not pose as a Service or the API server", a, n.ServiceCIDR)
	case n.PodCIDRPool.IsValid() && n.PodCIDRPool.Contains(a):
		return fmt.Sprintf("IP address %s is in the pod CIDR pool %s (--pod-cidr-pool): a node may not pose as a pod", a, n.PodCIDRPool)
	case !subnet.Contains(a):
		return fmt.Sprintf("IP address %s is not inside worker subnet %s of Datacenter %s", a, subnet, p.Datacenter.Name)
	}
	if holder, ok := p.OtherServers[a]; ok {
		return fmt.Sprintf("IP address %s is the address of another Server, %s", a, holder)
	}
	if gw, err := netip.ParseAddr(p.Datacenter.Spec.AgentGateway); err == nil && gw.Unmap() == a {
		return fmt.Sprintf("IP address %s is the agentGateway (the router) of Datacenter %s", a, p.Datacenter.Name)
	}
	if a.String() != p.Server.Spec.IPAddress {
		return fmt.Sprintf("IP address %s is not the Server's ipAddress %s", a, p.Server.Spec.IPAddress)
	}
	return ""
}
