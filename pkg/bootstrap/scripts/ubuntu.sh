#!/usr/bin/env bash
# Stargate's node bootstrap for Ubuntu 22.04 and 24.04. It turns the machine
# into a worker node of the cluster through kubelet TLS bootstrap, and it is
# idempotent: every run first resets what a previous install left (kubelet
# stopped, its state and certificates wiped), then installs containerd and
# the kubelet of the profile's Kubernetes version and starts kubelet with
# the bootstrap kubeconfig Stargate delivered next to this script.
#
# Input (beside this script, written by stargate-controller):
#   stargate.env            STARGATE_* variables (see below)
#   bootstrap-kubelet.conf  bootstrap kubeconfig with a short-lived token
#   ca.crt                  the cluster CA
#   tailscale-authkey       only when the profile names tailscaleAuthKeySecretRef:
#                           the auth key the host joins the tailnet with
set -euo pipefail
# The runner keeps the work directory private (umask 077); what this script
# installs is meant to be world-readable: apt reads keyrings and sources as
# the user _apt and ignores a keyring it cannot read.
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
. "$here/stargate.env"
: "${STARGATE_NODE_NAME:?}" "${STARGATE_KUBERNETES_VERSION:?}" "${STARGATE_NODE_LABELS:?}"

log() { printf '[stargate] %s\n' "$*"; }

# shellcheck source=/dev/null
. /etc/os-release
case "${ID:-}:${VERSION_ID:-}" in
  ubuntu:22.04 | ubuntu:24.04) ;;
  *)
    log "unsupported OS '${PRETTY_NAME:-unknown}': this script needs Ubuntu 22.04 or 24.04; name your own script in the profile's bootstrapScriptRef"
    exit 2
    ;;
esac

log "resetting what a previous install left"
systemctl stop kubelet 2>/dev/null || true
# Unmount pod volumes before wiping kubelet's state.
awk '$2 ~ "^/var/lib/kubelet/" {print $2}' /proc/mounts | sort -r | xargs -r umount -l
rm -rf /var/lib/kubelet /etc/kubernetes/kubelet.conf /etc/kubernetes/bootstrap-kubelet.conf /etc/kubernetes/pki/ca.crt

log "preparing the kernel"
swapoff -a
sed -i '/\sswap\s/ s/^\([^#]\)/#\1/' /etc/fstab
cat >/etc/modules-load.d/stargate-kubernetes.conf <<MODULES
overlay
br_netfilter
MODULES
modprobe overlay
modprobe br_netfilter
cat >/etc/sysctl.d/90-stargate-kubernetes.conf <<SYSCTL
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
SYSCTL
sysctl --system >/dev/null

export DEBIAN_FRONTEND=noninteractive
if [[ -n "${STARGATE_TAILSCALE_AUTHKEY_FILE:-}" ]]; then
  # The profile names a Tailscale auth key: the host joins the tailnet as
  # its node name. The key is read from its file (never on a command line)
  # and removed once used. Pod traffic still takes the routes Stargate
  # manages (through the DC router); the host does not accept tailnet
  # routes.
  keyfile="$here/${STARGATE_TAILSCALE_AUTHKEY_FILE}"
  if ! command -v tailscale >/dev/null; then
    log "installing tailscale from pkgs.tailscale.com"
    install -d -m 0755 /usr/share/keyrings
    curl -fsSL "https://pkgs.tailscale.com/stable/ubuntu/${VERSION_CODENAME}.noarmor.gpg" -o /usr/share/keyrings/tailscale-archive-keyring.gpg
    curl -fsSL "https://pkgs.tailscale.com/stable/ubuntu/${VERSION_CODENAME}.tailscale-keyring.list" -o /etc/apt/sources.list.d/tailscale.list
    apt-get update -q
    apt-get install -y -q tailscale
  fi
  systemctl enable --now tailscaled
  login=()
  if [[ -n "${STARGATE_TAILSCALE_LOGIN_SERVER:-}" ]]; then
    login=("--login-server=${STARGATE_TAILSCALE_LOGIN_SERVER}")
  fi
  log "joining the tailnet as ${STARGATE_NODE_NAME}"
  tailscale up --reset --auth-key="file:${keyfile}" --hostname="${STARGATE_NODE_NAME}" --accept-routes=false "${login[@]}"
  rm -f "$keyfile"
fi

log "installing ${STARGATE_CONTAINER_RUNTIME:-containerd}"
apt-get update -q
apt-get install -y -q apt-transport-https ca-certificates curl gpg conntrack socat containerd
mkdir -p /etc/containerd
containerd config default >/etc/containerd/config.toml
sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
systemctl enable containerd
systemctl restart containerd

version=${STARGATE_KUBERNETES_VERSION#v}
minor=$(printf '%s' "$version" | cut -d. -f1,2)
log "installing kubelet ${version} from the Kubernetes v${minor} package repository"
install -d -m 0755 /etc/apt/keyrings
curl -fsSL "https://pkgs.k8s.io/core:/stable:/v${minor}/deb/Release.key" | gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v${minor}/deb/ /" >/etc/apt/sources.list.d/kubernetes.list
apt-get update -q
package=kubelet
if [[ "$version" == *.*.* ]]; then
  pkgver=$(apt-cache madison kubelet | awk -v v="$version" '$3 ~ ("^" v "-") {print $3; exit}')
  if [[ -z "$pkgver" ]]; then
    log "kubelet ${version} is not in the package repository"
    exit 3
  fi
  package="kubelet=${pkgver}"
fi
apt-mark unhold kubelet >/dev/null 2>&1 || true
apt-get install -y -q --allow-downgrades --allow-change-held-packages "$package"
apt-mark hold kubelet >/dev/null

log "writing the kubelet configuration"
install -d -m 0755 /etc/kubernetes /etc/kubernetes/pki /var/lib/kubelet /etc/systemd/system/kubelet.service.d
install -m 0644 "$here/ca.crt" /etc/kubernetes/pki/ca.crt
install -m 0600 "$here/bootstrap-kubelet.conf" /etc/kubernetes/bootstrap-kubelet.conf
cat >/var/lib/kubelet/config.yaml <<CONFIG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
cgroupDriver: systemd
clusterDNS:
  - ${STARGATE_CLUSTER_DNS:-10.0.0.10}
clusterDomain: cluster.local
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
rotateCertificates: true
serverTLSBootstrap: true
CONFIG
extra=()
if [[ -n "${STARGATE_NODE_IP:-}" ]]; then
  extra+=("--node-ip=${STARGATE_NODE_IP}")
fi
if [[ -n "${STARGATE_NODE_TAINTS:-}" ]]; then
  extra+=("--register-with-taints=${STARGATE_NODE_TAINTS}")
fi
cat >/etc/systemd/system/kubelet.service.d/10-stargate.conf <<UNIT
[Service]
ExecStart=
ExecStart=/usr/bin/kubelet --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml --hostname-override=${STARGATE_NODE_NAME} --node-labels=${STARGATE_NODE_LABELS} ${extra[*]}
UNIT

log "starting kubelet as node ${STARGATE_NODE_NAME}"
systemctl daemon-reload
systemctl enable kubelet
systemctl restart kubelet
log "kubelet started; it joins through TLS bootstrap"
