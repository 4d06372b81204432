#!/usr/bin/env bash
# Checks that Postgres and Redis answer; on failure prints one line saying how to start them.
set -u
PGURL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
ok=0
if ! psql "$PGURL" -Atqc 'select 1' >/dev/null 2>&1; then
  echo "Postgres is not reachable at $PGURL — start it (Debian: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start) or set TEST_DATABASE_URL" >&2
  ok=1
fi
host_port="${REDIS#redis://}"; host_port="${host_port%%/*}"
if ! redis-cli -h "${host_port%%:*}" -p "${host_port##*:}" ping >/dev/null 2>&1; then
  echo "Redis is not reachable at $REDIS — start it (redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\") or set TEST_REDIS_URL" >&2
  ok=1
fi
# The Redis-over-TLS tests start a private redis-server (TLS on its own loopback port).
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is not on PATH — the Redis TLS tests start their own (Debian: apt-get install redis-server; it must be built with TLS, as Debian's 7.x is)" >&2
  ok=1
fi
exit $ok
