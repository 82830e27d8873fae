#!/usr/bin/env bash
# Makes a local Python base image without Docker Hub: debootstrap a minimal Debian with
# python3 + pip + venv, then `docker import` it. Dockerfiles take it as ARG BASE_IMAGE.
#
#   bash docker/base/build-base.sh [IMAGE] [STATE_DIR]     (default pt-local/python:3.11)
set -eu
IMAGE=${1:-pt-local/python:3.11}
STATE=${2:-${PT_DOCKER_STATE:-/tmp/pt-docker}}
SUITE=${PT_BASE_SUITE:-bookworm}
mkdir -p "$STATE"
# Use the same Debian mirror as this machine's apt sources (the only one reachable here).
mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1 | awk '{print $2}')
[ -n "$mirror" ] || mirror=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
rootfs="$STATE/rootfs.$$"
rm -rf "$rootfs"
echo "build-base: debootstrap $SUITE (about 40 s)" >&2
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
  "$SUITE" "$rootfs" ${mirror:+"$mirror"} >"$STATE/debootstrap.log" 2>&1 \
  || { echo "debootstrap failed, see $STATE/debootstrap.log" >&2; rm -rf "$rootfs"; exit 1; }
# python3 as `python` too, and pip allowed to install into the system (an image, not a host).
chroot "$rootfs" ln -sf /usr/bin/python3 /usr/local/bin/python
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
echo "build-base: docker import $IMAGE" >&2
tar -C "$rootfs" -c . | docker import \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' \
  - "$IMAGE" >/dev/null
rm -rf "$rootfs"
echo "build-base: $IMAGE ready" >&2
