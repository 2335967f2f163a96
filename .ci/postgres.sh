#!/usr/bin/env bash
# A throw-away PostgreSQL server on 127.0.0.1 for the `cnnlab sweep --storage postgresql://` tests.
#   bash .ci/postgres.sh start DIR PORT   -> prints the database URL (cluster in DIR)
#   bash .ci/postgres.sh stop DIR
# Installs Debian's postgresql with apt-get when no server binaries are found. As root the
# cluster runs as the `postgres` user (the server refuses to run as root).
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?folder for the cluster}; port=${3:-55432}

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$cmd" in
  start)
    bin=$(find_bin)
    if [ -z "$bin" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      { timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 \
          apt-get install -y -qq postgresql; } >&2
      bin=$(find_bin)
    fi
    [ -n "$bin" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 3; }
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then useradd --system postgres; fi
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    echo cnnlab-test > "$dir/pw"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/pw"
    as_owner "$bin/initdb" -D "$dir/data" -U cnnlab --pwfile="$dir/pw" --auth=scram-sha-256 >"$dir/initdb.log" 2>&1
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $dir" start >&2
    PGPASSWORD=cnnlab-test "$bin/createdb" -h 127.0.0.1 -p "$port" -U cnnlab cnnlab_test >&2
    echo "postgresql://cnnlab:cnnlab-test@127.0.0.1:$port/cnnlab_test"
    ;;
  stop)
    bin=$(find_bin)
    [ -d "$dir/data" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
