#!/usr/bin/env bash
# Sourced by the container harness: podman settings this sandbox needs (not part of the product).
# - podman's default root ulimits exceed what the sandbox allows: lower nofile/nproc in a private
#   containers.conf, computed from this machine's hard limits and kernel.pid_max;
# - crun cannot create containers under this sandbox's hybrid cgroups: use runc (as Debian's podman allows);
# - the private file is used through CONTAINERS_CONF, so the machine's own podman config stays untouched.
export MECHA_CONTAINERS_STATE=${MECHA_CONTAINERS_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/mecha-containers}
mkdir -p "$MECHA_CONTAINERS_STATE"

_mecha_limit() {  # the smaller of a hard limit and a cap ("unlimited" counts as the cap)
  local value=$1 cap=$2
  if [ "$value" = unlimited ] || [ "$value" -gt "$cap" ]; then echo "$cap"; else echo "$value"; fi
}
_mecha_nofile=$(_mecha_limit "$(ulimit -Hn)" 1048576)
_mecha_nproc=$(_mecha_limit "$(ulimit -Hu)" "$(cat /proc/sys/kernel/pid_max)")
export CONTAINERS_CONF="$MECHA_CONTAINERS_STATE/containers.conf"
cat > "$CONTAINERS_CONF" <<CONF
# Written by compose/containers/podman-env.sh (the harness), not by hand.
[containers]
default_ulimits = ["nofile=$_mecha_nofile:$_mecha_nofile", "nproc=$_mecha_nproc:$_mecha_nproc"]
[engine]
runtime = "runc"
CONF
unset _mecha_nofile _mecha_nproc
