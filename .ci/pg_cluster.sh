#!/usr/bin/env bash
# A private, throw-away PostgreSQL cluster for the tests: its own data and socket directory under
# DIR, listening on 127.0.0.1 on a free port, trust auth (nothing else listens there).
#   .ci/pg_cluster.sh start DIR   -> prints "export TEST_DATABASE_URL=postgresql://..." (eval it)
#   .ci/pg_cluster.sh stop DIR
# Needs Debian's postgresql package (initdb under /usr/lib/postgresql/*/bin).  As root, the
# server runs as the 'postgres' user (initdb refuses root).
# PG_FSYNC=on keeps PostgreSQL's default durability (the tests turn fsync off: they kill processes,
# never the machine); the benchmark sets it.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?directory}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$bindir" ] || { echo "no PostgreSQL server installed (apt-get install postgresql)" >&2; exit 1; }
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=${PG_FSYNC:-off} -c max_connections=200" \
      start >/dev/null
    as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres phantom_test
    echo "export TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:$port/phantom_test"
    ;;
  stop)
    [ -d "$dir/data" ] && as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
