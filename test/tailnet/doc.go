// Package tailnet runs a real tailnet for Stargate's tests, offline and
// inside network namespaces of its own.
//
// Real, built by hack/install-tailscale.sh from tailscale.com v1.102.5:
// tailscaled (kernel TUN) and the tailscale CLI on every router; the
// control server, Tailscale's own tstest/integration/testcontrol; the DERP
// relay (derp/derpserver) and a STUN responder (net/stun). The control
// program, tailcontrol (hack/tools/tailscale/tailcontrol), serves control
// and DERP over https with a certificate of a CA made here, which the
// routers trust through SSL_CERT_FILE.
//
// Ours: the Tailscale REST API v2 that Stargate's controller calls
// (pkg/tailscale, through tailscale.com/client/tailscale/v2): the OAuth
// token endpoint, the device list and a device's routes, served by
// tailcontrol on testcontrol's state. testcontrol knows only the routes a
// node serves to its peers; the API keeps the enabled routes per device and
// has a node serve advertised ∩ enabled, so that a route enabled but not
// advertised carries nothing, as in the real service. The API takes one API
// key and one OAuth client (Control.APIKeyCredentials, OAuthCredentials)
// and refuses others with 401; it listens on a loopback address of the
// host's namespace (Control.APIURL), where tests and the controller run.
//
// The world: StartControl makes an underlay segment (a bridge in namespace
// <prefix>-hub, addresses from 203.0.113.192/26) with the control at
// 203.0.113.193 in <prefix>-ctl; StartRouter runs tailscaled in a new
// namespace on the underlay (or in one the caller already has) and Up joins
// it with the auth key, passed to the CLI as file:PATH. AddHost puts a host
// namespace behind a router. Nothing is added to the host's own namespace
// but the API's loopback listener; Close stops every process by its PID and
// deletes every namespace the tailnet made. Tailnet IPs follow the order of
// registration: look them up (Router.IP), never assume them.
//
// Everything needs root and the binaries; without them StartControl fails
// saying what to run.
package tailnet
