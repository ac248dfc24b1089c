#!/usr/bin/env bash
# Installs the Debian packages that tests and `make dev` need beyond Go:
# OpenSSH's sshd (the datacenter simulation's hosts), iproute2 (network
# namespaces and veth pairs), shellcheck (node bootstrap scripts) and protoc
# with the google/protobuf protos (hack/update-codegen.sh), Debian's CA
# certificates, the bundle `make images` puts into every image, and what the
# real test nodes run beside the kubelet and containerd that
# hack/install-node-bins.sh builds: runc, the CNI plugins (bridge,
# host-local, loopback in /usr/lib/cni), and iptables, nftables and conntrack
# for kube-proxy.
# Installs only what is missing, with apt-get as root or through sudo; when
# nothing is missing it is a single dpkg-query.
#
# --best-effort (for `make dev`): when something is missing and neither root
# nor sudo can install it, warn and exit 0. `make dev` without root runs the
# API only, which needs none of these; its simulated datacenter runs only as
# root, and root can install them.
set -euo pipefail

best_effort=false
case "${1:-}" in
  "") ;;
  --best-effort) best_effort=true ;;
  *) echo "usage: $0 [--best-effort]" >&2; exit 2 ;;
esac

packages=(openssh-server openssh-client iproute2 shellcheck protobuf-compiler libprotobuf-dev ca-certificates
  runc containernetworking-plugins iptables nftables conntrack)
# One dpkg-query for all of them: a line per package that dpkg knows, and
# only a complaint on stderr (and exit status 1) for one it has never seen.
installed=$'\n'$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null || true)$'\n'
missing=()
for p in "${packages[@]}"; do
  if [[ "$installed" != *$'\n'"$p installed"$'\n'* ]]; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

sudo=()
cannot=""
if ! command -v apt-get >/dev/null; then
  cannot="there is no apt-get here"
elif [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    cannot="this user is not root and there is no sudo"
  fi
fi
if [[ -n "$cannot" ]]; then
  if $best_effort; then
    echo "warning: not installing ${missing[*]}: $cannot; going on without them" \
      "(only the simulated datacenter, which runs as root, needs them)" >&2
    exit 0
  fi
  echo "missing Debian packages ${missing[*]}, which cannot be installed here: $cannot." \
    "Run hack/install-deps.sh as root." >&2
  exit 1
fi

echo "installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
# env, because sudo does not pass DEBIAN_FRONTEND on.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
