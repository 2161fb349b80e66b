#!/usr/bin/env bash
# Runs every test against one throwaway PostgreSQL started here and stopped
# on exit, whatever happens. SMQ_TEST_DATABASE_URL, when set, names a server
# to use instead.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_bin() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | tail -n 1
}

if [ -z "${SMQ_TEST_DATABASE_URL:-}" ]; then
  dir=$(mktemp -d /tmp/smq-test-pg.XXXXXX)
  as=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    as=(runuser -u postgres --)
  fi
  port=
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 30000))
    if ! (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
  done
  "${as[@]}" "$(pg_bin initdb)" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --no-instructions >/dev/null
  "${as[@]}" "$(pg_bin pg_ctl)" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
  trap '"${as[@]}" "$(pg_bin pg_ctl)" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
  export SMQ_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  echo "test postgresql on port $port"
fi

go vet ./...
go test -race -count=1 -timeout 40m "$@" ./...
