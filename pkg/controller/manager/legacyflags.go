package manager

// The flags of the original Stargate's controller (azure-controller of
// github.com/vpatelsj/stargate), which used Go's flag package: one dash,
// "-name value" or "-name=value". They are accepted as aliases of today's
// flags, or, where the setting now lives in an object or has no
// equivalent, accepted and ignored with a warning saying where it lives.
// docs/migrating-from-stargate.md lists them.

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// legacyFlag is one flag of the original controller.
type legacyFlag struct {
	name string
	// isBool flags take no separate value ("-enable-route-sync").
	isBool bool
	// to are today's flags set to the flag's value.
	to []string
	// env is the environment variable set to the value (credentials, which
	// today come from a Secret or the environment).
	env string
	// convert maps the value to today's, with a note; nil keeps it.
	convert func(string) (string, string, error)
	// where says, for a flag with no equivalent (to and env empty), where
	// its setting lives now ("now ...") or why there is none.
	where string
	// note is said along with the alias.
	note string
}

var legacyFlags = []legacyFlag{
	{name: "metrics-bind-address", to: []string{"metrics-bind-address"}},
	{name: "kubeconfig", to: []string{"kubeconfig"}},
	{name: "kind-container", where: "no equivalent: workers join with bootstrap tokens through the API server (--api-server-url); nothing runs in the control plane's container"},
	{name: "control-plane-ip", where: "now --api-server-url, the address the workers reach the API server at"},
	{name: "control-plane-hostname", where: "now --api-server-tls-server-name, when the API server's certificate does not name the host of --api-server-url"},
	{name: "control-plane-mode", to: []string{"control-plane-mode"}, convert: convertControlPlaneMode},
	{name: "control-plane-ssh-user", where: "no equivalent: Stargate never logs in to the control plane"},
	{name: "ssh-private-key", where: "now the ssh-privatekey key of the kubernetes.io/ssh-auth Secret that the ProvisioningProfile's spec.sshCredentialsSecretRef names"},
	{name: "ssh-port", to: []string{"router-ssh-port", "advertise-routes-ssh-port"},
		note: "the DC routers' SSH port; each Server's own port is its spec.sshPort (default 22)"},
	{name: "admin-username", where: "now spec.adminUsername of the ProvisioningProfile (default ubuntu)"},
	{name: "aks-api-server", to: []string{"api-server-url"}, note: "required now: it is no longer taken from the kubeconfig"},
	{name: "aks-cluster-name", where: "no equivalent: the cluster is the one --kubeconfig names"},
	{name: "aks-resource-group", where: "no equivalent; the route table's resource group is --azure-resource-group (the original's -aks-node-resource-group)"},
	{name: "aks-cluster-dns", to: []string{"cluster-dns"}},
	{name: "aks-subscription-id", to: []string{"azure-subscription-id"}},
	{name: "aks-vm-resource-group", where: "no equivalent: Stargate does not look up the workers' virtual machines"},
	{name: "aks-api-server-private-ip", note: "with -aks-api-server it becomes --api-server-url with this address and --api-server-tls-server-name with the URL's host"},
	{name: "dc-router-tailscale-ip", where: "now spec.router.ip of each Datacenter (and spec.routerIP of its Servers)"},
	{name: "aks-router-tailscale-ip", to: []string{"aks-router-tailnet-ip"}},
	{name: "azure-route-table-name", to: []string{"azure-route-table"}},
	{name: "azure-vnet-name", where: "no equivalent: only the route table (--azure-route-table) is written; stargate-apiserver's --cloud-network-cidr keeps Datacenters off the VNet"},
	{name: "azure-subnet-name", where: "no equivalent: only the route table (--azure-route-table) is written"},
	{name: "enable-route-sync", isBool: true, to: []string{"enable-route-sync", "enable-azure-routes", "enable-tailscale-routes"},
		note: "the original's route sync kept the Azure route table and the Tailscale routes; so does this"},
	{name: "aks-node-resource-group", to: []string{"azure-resource-group"}},
	{name: "router-subnet-name", where: "no equivalent: Stargate does not manage the router subnet's route table"},
	{name: "aks-router-private-ip", to: []string{"aks-router-ip"}},
	{name: "router-route-table-name", where: "no equivalent: Stargate does not manage the router subnet's route table"},
	{name: "dc-subnet-cidr", where: "now spec.workerSubnet of each Datacenter"},
	{name: "dc-pod-cidr", where: "now spec.podCIDRBlock of each Datacenter (for pinned pod CIDRs), or --datacenter-block-size for per-datacenter blocks of --pod-cidr-pool"},
	{name: "tailscale-api-key", env: "TS_API_KEY", note: "a credential on the command line is visible to every user of the host: prefer --tailscale-credentials-secret"},
	{name: "tailscale-client-id", env: "TS_OAUTH_CLIENT_ID"},
	{name: "tailscale-client-secret", env: "TS_OAUTH_CLIENT_SECRET", note: "a credential on the command line is visible to every user of the host: prefer --tailscale-credentials-secret"},
	{name: "tailnet-name", env: "TS_TAILNET"},
	{name: "zap-devel", isBool: true, where: "now -v (klog verbosity)"},
	{name: "zap-encoder", where: "now -v (klog verbosity)"},
	{name: "zap-log-level", where: "now -v (klog verbosity)"},
	{name: "zap-stacktrace-level", where: "now -v (klog verbosity)"},
	{name: "zap-time-encoding", where: "now -v (klog verbosity)"},
}

// legacyEnv are the original's environment variables for the Tailscale
// credentials, with today's names.
var legacyEnv = map[string]string{
	"TAILSCALE_API_KEY":       "TS_API_KEY",
	"TAILSCALE_CLIENT_ID":     "TS_OAUTH_CLIENT_ID",
	"TAILSCALE_CLIENT_SECRET": "TS_OAUTH_CLIENT_SECRET",
}

func convertControlPlaneMode(v string) (string, string, error) {
	switch v {
	case "aks", "self-hosted":
		return v, "", nil
	case "kind", "tailscale":
		return "self-hosted", fmt.Sprintf("control plane mode %q is self-hosted: workers join with bootstrap tokens through --api-server-url, without kubeadm on the control plane", v), nil
	}
	return "", "", fmt.Errorf("invalid value %q for flag -control-plane-mode: want aks, self-hosted, or the original's kind or tailscale", v)
}

var legacyByName = func() map[string]*legacyFlag {
	m := map[string]*legacyFlag{}
	for i := range legacyFlags {
		m[legacyFlags[i].name] = &legacyFlags[i]
	}
	return m
}()

// LegacyArgs is the command line rewritten for today's flags.
type LegacyArgs struct {
	// Args are the arguments to parse.
	Args []string
	// Env are environment variables to set before the controllers read
	// theirs (credentials given as flags).
	Env map[string]string
	// Warnings say, for each original flag given, what it is now. They
	// never hold a flag's value.
	Warnings []string
}

// RewriteLegacyFlags rewrites the original controller's flags in args into
// today's flags of fs: "-aks-api-server URL" becomes "--api-server-url
// URL", and a flag whose setting lives elsewhere now is dropped with a
// warning saying where. A single dash before any long flag of fs is
// accepted too (Go's flag package allowed it; pflag reads "-name" as
// shorthands). A flag of the original that fs also has keeps today's
// meaning when written with two dashes. lookupEnv reads the environment,
// for the original's TAILSCALE_* variables.
func RewriteLegacyFlags(fs *pflag.FlagSet, args []string, lookupEnv func(string) (string, bool)) (*LegacyArgs, error) {
	out := &LegacyArgs{Env: map[string]string{}}
	var apiServer, privateIP string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			out.Args = append(out.Args, args[i:]...)
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			out.Args = append(out.Args, arg)
			continue
		}
		single := arg[1] != '-'
		body := strings.TrimLeft(arg, "-")
		name, value, hasValue := strings.Cut(body, "=")
		lf := legacyByName[name]
		if lf == nil || (!single && fs.Lookup(name) != nil) {
			if single && len(name) > 1 && fs.Lookup(name) != nil {
				arg = "-" + arg
			}
			out.Args = append(out.Args, arg)
			continue
		}
		dashed := "-" + name
		switch {
		case lf.isBool && !hasValue:
			value = "true"
		case lf.isBool:
			if _, err := strconv.ParseBool(value); err != nil {
				return nil, fmt.Errorf("invalid value %q for flag %s: want true or false", value, dashed)
			}
		case !hasValue:
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag %s needs a value", dashed)
			}
			i++
			value = args[i]
		}
		switch {
		case lf.name == "aks-api-server":
			apiServer = value
		case lf.name == "aks-api-server-private-ip":
			privateIP = value
			continue
		}
		if lf.convert != nil {
			v, note, err := lf.convert(value)
			if err != nil {
				return nil, err
			}
			value = v
			if note != "" {
				out.Warnings = append(out.Warnings, fmt.Sprintf("flag %s of the original Stargate: %s", dashed, note))
			}
		}
		switch {
		case len(lf.to) > 0:
			for _, to := range lf.to {
				if fs.Lookup(to) == nil {
					return nil, fmt.Errorf("flag %s of the original Stargate is an alias of --%s, which this program does not have", dashed, to)
				}
				out.Args = append(out.Args, "--"+to+"="+value)
			}
			if len(lf.to) > 1 || lf.to[0] != lf.name || lf.note != "" {
				out.Warnings = append(out.Warnings, aliasWarning(dashed, "--"+strings.Join(lf.to, ", --"), lf.note))
			}
		case lf.env != "":
			out.Env[lf.env] = value
			out.Warnings = append(out.Warnings, aliasWarning(dashed, "the environment variable "+lf.env, lf.note))
		default:
			out.Warnings = append(out.Warnings, fmt.Sprintf("flag %s of the original Stargate is ignored: %s", dashed, lf.where))
		}
	}
	if privateIP != "" {
		args, warning, err := privateAPIServer(apiServer, privateIP)
		if err != nil {
			return nil, err
		}
		out.Args = append(out.Args, args...)
		out.Warnings = append(out.Warnings, warning)
	}
	for _, old := range sortedKeys(legacyEnv) {
		now := legacyEnv[old]
		if _, set := out.Env[now]; set {
			continue
		}
		if _, set := lookupEnv(now); set {
			continue
		}
		if v, ok := lookupEnv(old); ok && v != "" {
			out.Env[now] = v
			out.Warnings = append(out.Warnings, fmt.Sprintf("environment variable %s of the original Stargate is read as %s", old, now))
		}
	}
	return out, nil
}

func aliasWarning(old, now, note string) string {
	w := fmt.Sprintf("flag %s of the original Stargate is an alias of %s", old, now)
	if note != "" {
		w += " (" + note + ")"
	}
	return w
}

// privateAPIServer is the original's -aks-api-server-private-ip: the
// workers reach the API server at the private address but check its
// certificate against the URL's host name.
func privateAPIServer(apiServer, ip string) ([]string, string, error) {
	if net.ParseIP(ip) == nil {
		return nil, "", fmt.Errorf("invalid value %q for flag -aks-api-server-private-ip: not an IP address", ip)
	}
	if apiServer == "" {
		return nil, "", fmt.Errorf("flag -aks-api-server-private-ip needs -aks-api-server: the URL whose host name the API server's certificate names (or give --api-server-url https://%s and --api-server-tls-server-name)", ip)
	}
	u, err := url.Parse(apiServer)
	if err != nil || u.Host == "" {
		return nil, "", fmt.Errorf("invalid value %q for flag -aks-api-server: not a URL", apiServer)
	}
	host := u.Hostname()
	if port := u.Port(); port != "" {
		u.Host = net.JoinHostPort(ip, port)
	} else if strings.Contains(ip, ":") {
		u.Host = "[" + ip + "]"
	} else {
		u.Host = ip
	}
	return []string{"--api-server-url=" + u.String(), "--api-server-tls-server-name=" + host},
		fmt.Sprintf("flag -aks-api-server-private-ip of the original Stargate: the workers reach the API server at --api-server-url=%s and check its certificate for --api-server-tls-server-name=%s", u.String(), host), nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// LegacyFlagUsages lists the original controller's flags and what each is
// now, for --help.
func LegacyFlagUsages() string {
	var b strings.Builder
	for _, lf := range legacyFlags {
		var now string
		switch {
		case lf.name == "aks-api-server-private-ip":
			now = "with -aks-api-server: --api-server-url at this address and --api-server-tls-server-name"
		case len(lf.to) > 0:
			now = "--" + strings.Join(lf.to, ", --")
			if lf.convert != nil {
				now += " (kind and tailscale are self-hosted)"
			}
		case lf.env != "":
			now = "environment variable " + lf.env
		default:
			now = "ignored: " + lf.where
		}
		fmt.Fprintf(&b, "      -%-28s %s\n", lf.name, now)
	}
	b.WriteString("      The environment variables TAILSCALE_API_KEY, TAILSCALE_CLIENT_ID and TAILSCALE_CLIENT_SECRET are read as TS_API_KEY, TS_OAUTH_CLIENT_ID and TS_OAUTH_CLIENT_SECRET when those are unset.\n")
	return b.String()
}
