#!/usr/bin/env bash
# Builds the pt toolkit image.   bash docker/toolkit/build.sh [IMAGE] [BASE_IMAGE]
#   IMAGE      default pipeline-tools:<version>
#   BASE_IMAGE default public.ecr.aws/docker/library/python:3.11-slim (locally: pt-local/python:3.11)
set -eu
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERSION=$(python3 -c "import re,sys; print(re.search(r'__version__ = \"([^\"]+)\"', open('$ROOT/pipeline_tools/__init__.py').read())[1])")
IMAGE=${1:-pipeline-tools:$VERSION}
BASE=${2:-${PT_TOOLKIT_BASE_IMAGE:-public.ecr.aws/docker/library/python:3.11-slim}}
WHEELS="$ROOT/docker/toolkit/wheels"
rm -rf "$WHEELS"
echo "toolkit: pip wheel (host side)" >&2
python3 -m pip wheel -q --wheel-dir "$WHEELS" "$ROOT"
echo "toolkit: docker build $IMAGE" >&2
docker build -q --build-arg "BASE_IMAGE=$BASE" -t "$IMAGE" "$ROOT/docker/toolkit"
rm -rf "$WHEELS"
echo "toolkit: $IMAGE ready" >&2
