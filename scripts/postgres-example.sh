#!/usr/bin/env bash
# Starts a throw-away PostgreSQL server for the HTTP example's PostgreSQL
# mode (README, "Context in HTTP") and follows its log; Ctrl+C (or a
# SIGTERM to this script) stops the server and deletes its data.
#
#   scripts/postgres-example.sh            # port 5433
#   PORT=5544 scripts/postgres-example.sh
#
# Loopback only, no password (trust). Needs PostgreSQL's server programs
# (Debian: apt-get install postgresql). PostgreSQL refuses to run as root;
# as root the server runs as the `postgres` user.
set -euo pipefail
port="${PORT:-5433}"

bindir="${GOCTX_PG_BINDIR:-}"
if [ -z "$bindir" ]; then
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
fi
if [ -z "$bindir" ] && command -v pg_config >/dev/null; then
  bindir=$(pg_config --bindir)
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "no PostgreSQL server found: install it (Debian: apt-get install postgresql)" >&2
  echo "or set GOCTX_PG_BINDIR to the directory that holds initdb" >&2
  exit 1
fi

dir=$(mktemp -d /tmp/goctx-pg-example.XXXXXX)
as_server() { "$@"; }
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$dir"
  as_server() { runuser -u postgres -- "$@"; }
fi
tail_pid=
# However the script ends: stop the server (if it runs), then delete.
cleanup() {
  [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null
  as_server "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_server "$bindir/initdb" -D "$dir/data" -U goctx -A trust -E UTF8 --no-sync >/dev/null
as_server "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c log_line_prefix='%m [%p] '" \
  start >/dev/null
echo "PostgreSQL on 127.0.0.1:$port (data in $dir, deleted on exit). In another terminal:"
echo
echo "  cargo run -p integration --example http_server -- --database postgres://goctx@127.0.0.1:$port/postgres"
echo "  psql postgres://goctx@127.0.0.1:$port/postgres \\"
echo "    -c \"SELECT pid, state, wait_event, query FROM pg_stat_activity WHERE backend_type = 'client backend'\""
echo
echo "Ctrl+C stops the server. Its log follows."
tail -n +1 -f "$dir/server.log" &
tail_pid=$!
wait "$tail_pid"
