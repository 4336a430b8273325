# The official postgres entrypoint, reduced to what compose uses: first start initialises PGDATA with
# POSTGRES_HOST_AUTH_METHOD and creates POSTGRES_DB; then `postgres` listens on every container address.
set -euo pipefail
if [ "${1:-}" = postgres ]; then
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb --username=postgres --auth="${POSTGRES_HOST_AUTH_METHOD:-trust}" -D "$PGDATA" >/dev/null
    echo "host all all all ${POSTGRES_HOST_AUTH_METHOD:-trust}" >> "$PGDATA/pg_hba.conf"
    if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
      postgres --single -D "$PGDATA" postgres <<< "CREATE DATABASE \"$POSTGRES_DB\";" >/dev/null
    fi
  fi
  shift
  exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
