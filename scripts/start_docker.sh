#!/usr/bin/env bash
# Make a Docker daemon reachable: install Debian's docker.io when missing and
# start dockerd with the vfs storage driver (works unprivileged-overlay-free, as root).
set -euo pipefail
if docker info >/dev/null 2>&1; then echo "[docker] daemon reachable"; exit 0; fi
if [ "$(id -u)" != "0" ]; then echo "[docker] not root: cannot start dockerd" >&2; exit 1; fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "[docker] installing docker.io and debootstrap (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq docker.io debootstrap >/dev/null
fi
command -v debootstrap >/dev/null 2>&1 || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
echo "[docker] starting dockerd (storage driver vfs), log in /tmp/dockerd.log"
nohup dockerd --storage-driver=vfs >/tmp/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then echo "[docker] daemon up"; exit 0; fi
    sleep 1
done
echo "[docker] dockerd did not come up in 60 s; last log lines:" >&2
tail -n 20 /tmp/dockerd.log >&2
exit 1
