#!/usr/bin/env bash
# Makes sure the Postgres and Redis the tests use answer. On a machine where they do not, with
# the default addresses, it starts them (Debian's cluster and a redis-server that keeps nothing on
# disk), installing them from Debian's packages first when they are missing and it may (root,
# apt-get). Otherwise, or when that fails, it prints one line per service saying what to do.
set -u
PGURL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
say() { echo "check-services: $*" >&2; }

pg_up() { command -v psql >/dev/null 2>&1 && psql "$PGURL" -Atqc 'select 1' >/dev/null 2>&1; }
host_port="${REDIS#redis://}"; host_port="${host_port%%/*}"
redis_up() { command -v redis-cli >/dev/null 2>&1 && redis-cli -h "${host_port%%:*}" -p "${host_port##*:}" ping >/dev/null 2>&1; }
wait_for() { # check-function, what
  for _ in $(seq 1 50); do "$1" && return 0; sleep 0.2; done
  say "$2 was started but does not answer yet"; return 1
}

# apt-get install, once, for the packages given; only as root on a Debian-like system.
apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  say "installing $* from Debian's packages (apt-get)"
  if [ -z "${apt_updated:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

start_postgres() {
  [ -z "${TEST_DATABASE_URL:-}" ] || return 1 # someone else's server: theirs to start
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt_install postgresql || return 1
  fi
  local version
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$version" ] || return 1
  say "starting Postgres $version (pg_ctlcluster $version main start)"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  # The tests connect over TCP as `postgres` without a password (trust on loopback).
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if [ -w "$hba" ] && ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    say "trusting loopback connections in $hba (a test machine's cluster)"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null 2>&1 || true
  fi
  wait_for pg_up "Postgres"
}

start_redis() {
  [ -z "${TEST_REDIS_URL:-}" ] || return 1
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server || return 1
  fi
  say "starting redis-server on 127.0.0.1:6379 (nothing kept on disk)"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || return 1
  wait_for redis_up "Redis"
}

status=0
if ! pg_up && ! start_postgres; then
  say "Postgres is not reachable at $PGURL — start it (Debian: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start) or set TEST_DATABASE_URL"
  status=1
fi
if ! redis_up && ! start_redis; then
  say "Redis is not reachable at $REDIS — start it (redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\") or set TEST_REDIS_URL"
  status=1
fi
# The Redis-over-TLS tests and the fault tests start private redis-servers and Postgres clusters.
if ! command -v redis-server >/dev/null 2>&1 && ! apt_install redis-server; then
  say "redis-server is not on PATH — the Redis TLS tests start their own (Debian: apt-get install redis-server; it must be built with TLS, as Debian's 7.x is)"
  status=1
fi
exit $status
