# Like the official redis image: `redis-server` without a config file also gets --protected-mode no.
if [ "${1:-}" = redis-server ]; then
  shift
  exec redis-server --protected-mode no "$@"
fi
exec "$@"
