#!/usr/bin/env bash
# Starts a throw-away PostgreSQL server for the HTTP example's PostgreSQL
# mode (README, "Context in HTTP"), in the foreground: Ctrl+C stops it and
# deletes its data.
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
cleanup() { rm -rf "$dir"; }
trap cleanup EXIT

as_server "$bindir/initdb" -D "$dir/data" -U goctx -A trust -E UTF8 --no-sync >/dev/null
echo "PostgreSQL on 127.0.0.1:$port (data in $dir, deleted on exit). In another terminal:"
echo
echo "  cargo run --example http_server -- --database postgres://goctx@127.0.0.1:$port/postgres"
echo "  psql postgres://goctx@127.0.0.1:$port/postgres \\"
echo "    -c \"SELECT pid, state, query FROM pg_stat_activity WHERE query LIKE '%pg_sleep%'\""
echo
echo "Ctrl+C stops the server. Its log follows."
# In the foreground: Ctrl+C reaches the server too (a fast shutdown).
as_server "$bindir/postgres" -D "$dir/data" -p "$port" -k "$dir" \
  -c listen_addresses=127.0.0.1 -c "log_line_prefix=%m [%p] " \
  -c log_min_error_statement=error
