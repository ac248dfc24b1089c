#!/usr/bin/env bash
# Stargate's node reset, the reverse of ubuntu.sh: run by a Decommission
# (or the deletion of a Server) after its Node was drained. It stops and
# disables the kubelet, unmounts its pod volumes and removes what the
# bootstrap installed for it (its systemd drop-in, configuration,
# kubeconfigs, certificates and state) and the kernel settings the
# bootstrap added, so the host is as it was before its first repave. The
# packages the bootstrap installed (containerd, kubelet, held) stay
# installed; this prints them. It is idempotent: a second run finds
# nothing to do and succeeds.
set -euo pipefail

log() { printf '[stargate] %s\n' "$*"; }

if systemctl list-unit-files kubelet.service >/dev/null 2>&1; then
  log "stopping and disabling the kubelet"
  systemctl disable --now kubelet 2>/dev/null || true
fi
# Pod volumes are unmounted before the kubelet's state is removed.
awk '$2 ~ "^/var/lib/kubelet/" {print $2}' /proc/mounts | sort -r | xargs -r umount -l
log "removing the kubelet's configuration, credentials and state"
rm -rf /var/lib/kubelet \
  /etc/kubernetes/kubelet.conf /etc/kubernetes/bootstrap-kubelet.conf /etc/kubernetes/pki/ca.crt \
  /etc/systemd/system/kubelet.service.d/10-stargate.conf
rmdir /etc/kubernetes/pki /etc/kubernetes /etc/systemd/system/kubelet.service.d 2>/dev/null || true
systemctl daemon-reload 2>/dev/null || true
log "removing the kernel settings of the bootstrap"
rm -f /etc/modules-load.d/stargate-kubernetes.conf /etc/sysctl.d/90-stargate-kubernetes.conf
sysctl --system >/dev/null 2>&1 || true
if command -v dpkg-query >/dev/null 2>&1; then
  left=$(dpkg-query -W -f='${Package} ' kubelet containerd 2>/dev/null || true)
  [ -z "$left" ] || log "left installed: ${left}(apt-get purge them if the host is retired)"
fi
log "reset done"
