# ddb-bridge operator image: `docker build -t ddbbridge:dev .`
# Stage 1 builds the project's wheel and installs it with its dependencies into a virtual environment
# that holds no installer; stage 2 copies only that environment onto the same base and drops root.
# Pin the base by digest too (python:3.12.8-slim-bookworm@sha256:...) when your registry mirror is known.

FROM python:3.12.8-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Only what the wheel is built from (see .dockerignore); the package folders are named in pyproject.toml.
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY lambdas ./lambdas
COPY devtools ./devtools
# --without-pip: the runtime environment gets no pip; the base image's pip installs into it.
RUN python -m venv --without-pip /opt/ddbbridge \
    && python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m pip --python /opt/ddbbridge/bin/python install /wheels/ddbbridge-*.whl

FROM python:3.12.8-slim-bookworm
# No installer in the final image either: the environment is complete.
RUN python -m pip uninstall --yes --root-user-action=ignore pip \
    && groupadd --system --gid 10001 ddbbridge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ddbbridge
COPY --from=builder /opt/ddbbridge /opt/ddbbridge
ENV PATH=/opt/ddbbridge/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
# kopf's probe endpoint (/healthz) and Prometheus metrics: kopf_app/settings.py.
EXPOSE 8080 9090
# Kubernetes probes /healthz (manifests/base/deployment.yaml); a Docker HEALTHCHECK would be ignored.
HEALTHCHECK NONE
# = ddbbridge.kopf_app.entry.CONTAINER_COMMAND / CONTAINER_ARGS (a unit test compares them).
ENTRYPOINT ["ddbbridge"]
CMD ["operator", "--all-namespaces", "--standalone", "--liveness-port", "8080", "--metrics-port", "9090"]
