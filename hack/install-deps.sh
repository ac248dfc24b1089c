#!/usr/bin/env bash
# Installs the Debian packages that tests and `make dev` need beyond Go:
# OpenSSH's sshd (the datacenter simulation's hosts), iproute2 (network
# namespaces and veth pairs), shellcheck (node bootstrap scripts) and protoc
# with the google/protobuf protos (hack/update-codegen.sh).
# Installs only what is missing; needs root (or sudo) when something is.
set -euo pipefail

packages=(openssh-server openssh-client iproute2 shellcheck protobuf-compiler libprotobuf-dev)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  sudo="sudo"
fi
echo "installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
