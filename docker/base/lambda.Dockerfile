# A Lambda-like Python base for local builds and tests (no Docker Hub / public ECR here):
# the plain local base + the Lambda runtime interface client (awslambdaric) + pytest, installed
# from wheels the host downloaded (the build itself has no trusted route to PyPI).
# Made by docker/base/build-base.sh; used as BASE_IMAGE for docker/model/Dockerfile.
ARG PLAIN_BASE=pt-local/python:3.11
FROM ${PLAIN_BASE}
COPY wheels /tmp/wheels
RUN python3 -m pip install --no-cache-dir --no-index --find-links /tmp/wheels awslambdaric pytest \
    && rm -rf /tmp/wheels
ENV LAMBDA_TASK_ROOT=/var/task
WORKDIR /var/task
