#!/usr/bin/env bash
# Envoy is ready when it is CONFIGURED, not merely LIVE (with a 2 s initial_fetch_timeout Envoy goes LIVE with no
# config at all). Like istio-agent's readiness probe (pilot-agent status/ready/probe.go) it reads the admin
# stats: LIVE, listeners (LDS) and clusters (CDS) accepted from the control plane at least once, and, stricter
# than istio-agent, no update rejected (NACKed) since Envoy started.
# Needs only bash (/dev/tcp): the official envoyproxy/envoy image has no curl and no python.
#   envoy-ready.sh ADMIN_PORT        exit 0 when ready; otherwise prints why and exits 1
set -u
port=${1:?usage: envoy-ready.sh ADMIN_PORT}
# ^(server\.state|cluster_manager\.cds\.update_(success|rejected)|listener_manager\.lds\.update_(success|rejected))$
filter='%5E%28server%5C.state%7Ccluster_manager%5C.cds%5C.update_%28success%7Crejected%29%7Clistener_manager'
filter+='%5C.lds%5C.update_%28success%7Crejected%29%29%24'

if ! exec 3<>"/dev/tcp/127.0.0.1/$port"; then
  echo "not ready: Envoy admin does not answer on 127.0.0.1:$port"
  exit 1
fi
# HTTP/1.1 with Host and Connection: close (Envoy 1.40's admin answers HTTP/1.0 with 426 Upgrade Required).
printf 'GET /stats?filter=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$filter" >&3
read -r -t 3 _ status _ <&3 || { echo "not ready: no answer from Envoy admin"; exit 1; }
if [ "$status" != 200 ]; then
  echo "not ready: Envoy admin /stats answered $status"
  exit 1
fi
declare -A stat=()
while IFS= read -r -t 3 line <&3; do
  line=${line%$'\r'}
  case $line in
    *": "*) stat[${line%%: *}]=${line#*: } ;;
  esac
done
exec 3<&-

reasons=()
[ "${stat[server.state]:-}" = 0 ] || reasons+=("server.state=${stat[server.state]:-missing} (0 = LIVE)")
[ "${stat[cluster_manager.cds.update_success]:-0}" -gt 0 ] || reasons+=("no clusters (CDS) received yet")
[ "${stat[listener_manager.lds.update_success]:-0}" -gt 0 ] || reasons+=("no listeners (LDS) received yet")
[ "${stat[cluster_manager.cds.update_rejected]:-0}" -eq 0 ] \
  || reasons+=("${stat[cluster_manager.cds.update_rejected]} CDS update(s) rejected")
[ "${stat[listener_manager.lds.update_rejected]:-0}" -eq 0 ] \
  || reasons+=("${stat[listener_manager.lds.update_rejected]} LDS update(s) rejected")
if [ "${#reasons[@]}" -gt 0 ]; then
  echo "not ready: ${reasons[*]}"
  exit 1
fi
echo "ready: LIVE, listeners and clusters received, none rejected"
