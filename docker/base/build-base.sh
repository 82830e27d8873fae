#!/usr/bin/env bash
# Makes a local Python base image without Docker Hub: debootstrap a minimal Debian with
# python3 + pip + venv, then `docker import` it. Dockerfiles take it as ARG BASE_IMAGE.
#
#   bash docker/base/build-base.sh [IMAGE] [STATE_DIR]     (default pt-local/python:3.11)
#
# It then makes the Lambda-like base $PT_LAMBDA_BASE_IMAGE (default pt-local/lambda-python:3.11):
# IMAGE + awslambdaric + pytest from wheels downloaded on the host (see lambda.Dockerfile).
# Set PT_LAMBDA_BASE_IMAGE= (empty) to skip it. Each image is made only when missing.
set -eu
IMAGE=${1:-pt-local/python:3.11}
STATE=${2:-${PT_DOCKER_STATE:-/tmp/pt-docker}}
SUITE=${PT_BASE_SUITE:-bookworm}
mkdir -p "$STATE"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAMBDA_IMAGE=${PT_LAMBDA_BASE_IMAGE-pt-local/lambda-python:3.11}

build_lambda_base() {
  [ -n "$LAMBDA_IMAGE" ] || return 0
  docker image inspect "$LAMBDA_IMAGE" >/dev/null 2>&1 && return 0
  ctx="$STATE/lambda-base.$$"
  rm -rf "$ctx" && mkdir -p "$ctx/wheels"
  echo "build-base: pip download awslambdaric pytest (host side)" >&2
  python3 -m pip download -q --only-binary :all: --python-version 3.11 --platform manylinux2014_x86_64 \
    awslambdaric pytest -d "$ctx/wheels" >"$STATE/pip-download.log" 2>&1 \
    || { echo "pip download failed, see $STATE/pip-download.log" >&2; rm -rf "$ctx"; exit 1; }
  cp "$HERE/lambda.Dockerfile" "$ctx/Dockerfile"
  echo "build-base: docker build $LAMBDA_IMAGE" >&2
  docker build -q --build-arg "PLAIN_BASE=$IMAGE" -t "$LAMBDA_IMAGE" "$ctx" >"$STATE/lambda-base.log" 2>&1 \
    || { echo "lambda base build failed, see $STATE/lambda-base.log" >&2; rm -rf "$ctx"; exit 1; }
  rm -rf "$ctx"
  echo "build-base: $LAMBDA_IMAGE ready" >&2
}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  build_lambda_base
  exit 0
fi
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
build_lambda_base
