#!/usr/bin/env bash
# Services the tests and the local release need: a Docker daemon, a local registry and a local
# Python base image (there is no Docker Hub here). Each step runs only when needed.
#
#   source scripts/services.sh        # exports DOCKER_HOST, PT_TEST_REGISTRY, PT_BASE_IMAGE
#   bash scripts/services.sh stop     # stops the daemon and registry this script started
#
# STATE dir: $PT_DOCKER_STATE (default /tmp/pt-docker). Registry port: $REGISTRY_PORT (5055).
set -u
STATE=${PT_DOCKER_STATE:-/tmp/pt-docker}
REGISTRY_PORT=${REGISTRY_PORT:-5055}
BASE_IMAGE=${PT_BASE_IMAGE:-pt-local/python:3.11}
mkdir -p "$STATE"
_fail() { echo "services.sh: $*" >&2; return 1 2>/dev/null || exit 1; }

if [ "${1:-}" = "stop" ]; then
  for pidfile in "$STATE/registry.pid" "$STATE/dockerd.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null && echo "stopped $(basename "$pidfile" .pid)"
    rm -f "$pidfile"
  done
  return 0 2>/dev/null || exit 0
fi

if ! command -v dockerd >/dev/null || ! command -v docker-registry >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "services.sh: installing docker.io docker-registry debootstrap (apt)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-registry debootstrap; } \
    >"$STATE/apt.log" 2>&1 || _fail "apt-get install failed, see $STATE/apt.log" || return 1 2>/dev/null || exit 1
fi

export DOCKER_HOST="unix://$STATE/docker.sock"
# overlay2 when this kernel mounts overlayfs here (a container start costs ~2 s instead of the 25-50 s
# that vfs spends copying the 209 MB image per container and per build step), else vfs. No bridge or
# iptables: what works inside this sandbox (see docs/local.md). PT_DOCKER_STORAGE=vfs forces vfs. Each
# driver has its own data root, so switching never mixes them (the base images are made once per root).
_overlay_works() {
  local d="$STATE/overlay-probe"
  rm -rf "$d" && mkdir -p "$d/l" "$d/u" "$d/w" "$d/m" || return 1
  mount -t overlay overlay -o "lowerdir=$d/l,upperdir=$d/u,workdir=$d/w" "$d/m" >/dev/null 2>&1 || { rm -rf "$d"; return 1; }
  umount "$d/m"; rm -rf "$d"
}
_start_dockerd() {  # $1 = storage driver
  local root="$STATE/data"; [ "$1" = vfs ] || root="$STATE/data-$1"
  nohup dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver="$1" \
    --data-root "$root" --exec-root "$STATE/exec" --pidfile "$STATE/dockerd.pid" \
    --host "$DOCKER_HOST" >"$STATE/dockerd.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && return 0; kill -0 "$pid" 2>/dev/null || return 1; sleep 0.5; done
  return 1
}
if ! docker info >/dev/null 2>&1; then
  driver=${PT_DOCKER_STORAGE:-}
  [ -n "$driver" ] || { _overlay_works && driver=overlay2 || driver=vfs; }
  if ! _start_dockerd "$driver" && [ "$driver" != vfs ]; then
    echo "services.sh: dockerd with $driver did not start (see $STATE/dockerd.log); using vfs" >&2
    [ -f "$STATE/dockerd.pid" ] && kill "$(cat "$STATE/dockerd.pid")" 2>/dev/null
    for _ in $(seq 1 40); do [ -f "$STATE/dockerd.pid" ] || break; sleep 0.25; done
    _start_dockerd vfs
  fi
  docker info >/dev/null 2>&1 || _fail "dockerd did not start, see $STATE/dockerd.log" || return 1 2>/dev/null || exit 1
fi

export PT_TEST_REGISTRY="127.0.0.1:$REGISTRY_PORT"
if ! curl -fsS "http://$PT_TEST_REGISTRY/v2/" >/dev/null 2>&1; then
  cat >"$STATE/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: $PT_TEST_REGISTRY
YML
  nohup docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
  echo $! >"$STATE/registry.pid"
  for _ in $(seq 1 80); do curl -fsS "http://$PT_TEST_REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.25; done
  curl -fsS "http://$PT_TEST_REGISTRY/v2/" >/dev/null 2>&1 || _fail "registry did not start, see $STATE/registry.log" || return 1 2>/dev/null || exit 1
fi

export PT_BASE_IMAGE="$BASE_IMAGE"
# Lambda-like base (plain base + awslambdaric + pytest) for docker/model/Dockerfile: BASE_IMAGE.
export PT_LAMBDA_BASE_IMAGE="${PT_LAMBDA_BASE_IMAGE:-pt-local/lambda-python:3.11}"
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || ! docker image inspect "$PT_LAMBDA_BASE_IMAGE" >/dev/null 2>&1; then
  bash "$(dirname "${BASH_SOURCE[0]}")/../docker/base/build-base.sh" "$BASE_IMAGE" "$STATE" \
    || _fail "base image build failed" || return 1 2>/dev/null || exit 1
fi

# The AWS Lambda Runtime Interface Emulator for `pt invoke --local` (Apache-2.0). It ships inside the
# aws-sam-cli wheel on PyPI; only the binary is extracted, SAM itself is not installed.
RIE_VERSION_SAM=${PT_RIE_SAM_VERSION:-1.170.0}
export PT_LAMBDA_RIE="${PT_LAMBDA_RIE:-$STATE/aws-lambda-rie}"
if [ ! -x "$PT_LAMBDA_RIE" ]; then
  arch=x86_64; case "$(uname -m)" in aarch64|arm64) arch=arm64;; esac
  python3 -m pip download -q --no-deps --disable-pip-version-check -d "$STATE/sam" "aws-sam-cli==$RIE_VERSION_SAM" \
    >"$STATE/rie.log" 2>&1 \
    && python3 - "$STATE/sam" "$arch" "$PT_LAMBDA_RIE" <<'PY' >>"$STATE/rie.log" 2>&1 || echo "services.sh: no Lambda RIE (see $STATE/rie.log); pt invoke uses its own Runtime API" >&2
import glob, os, sys, zipfile
wheel = sorted(glob.glob(os.path.join(sys.argv[1], "aws_sam_cli-*.whl")))[-1]
with zipfile.ZipFile(wheel) as z, open(sys.argv[3], "wb") as out:
    out.write(z.read(f"samcli/local/rapid/aws-lambda-rie-{sys.argv[2]}"))
os.chmod(sys.argv[3], 0o755)
PY
fi
echo "DOCKER_HOST=$DOCKER_HOST PT_TEST_REGISTRY=$PT_TEST_REGISTRY PT_BASE_IMAGE=$PT_BASE_IMAGE PT_LAMBDA_BASE_IMAGE=$PT_LAMBDA_BASE_IMAGE PT_LAMBDA_RIE=$PT_LAMBDA_RIE"
