#!/usr/bin/env bash
# Test scaffolding for machines without an image registry (ours, CI): builds local stand-ins
# for the public base images the Dockerfile and docker-compose.yml name, each only when no image
# of that name exists yet. Users pull the real images; nothing here is published.
#
#   scripts/standin-images.sh [debian] [postgres] [redis]     (default: all three)
#
#   debian:bookworm-slim  debootstrap --variant=minbase of bookworm from the host's apt mirror,
#                         with the host's apt sources and CA certificates (outbound HTTPS)
#   postgres:15           Debian's postgresql-15 on that base, honouring the official image's
#                         env contract (POSTGRES_USER/_PASSWORD/_PASSWORD_FILE/_DB, PGDATA,
#                         /docker-entrypoint-initdb.d/*.sql|*.sh)       tests/containers/standins/postgres
#   redis:7               Debian's redis-server on that base, /data, protected mode off like the
#                         official image                                 tests/containers/standins/redis
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.containers"
DOCKER=/usr/bin/docker; [ -x "$DOCKER" ] || DOCKER="$(command -v docker)"
say() { printf 'standin-images: %s\n' "$*" >&2; }
die() { printf 'standin-images: ERROR: %s\n' "$*" >&2; exit 1; }
have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
mkdir -p "$STATE"

debian() {
  have debian:bookworm-slim && { say "debian:bookworm-slim present"; return; }
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap missing (scripts/container-engine.sh installs it)"
  # The mirror the host's apt uses (deb822 .sources first, then sources.list): never hard-coded.
  local mirror
  mirror="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  [ -n "$mirror" ] || mirror="$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  [ -n "$mirror" ] || die "no apt mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
  local dir="$STATE/rootfs-bookworm" start=$SECONDS
  rm -rf "$dir"
  say "debian:bookworm-slim absent: debootstrap --variant=minbase bookworm from $mirror (about 30 s)"
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$STATE/debootstrap.log" 2>&1 \
    || { tail -n 20 "$STATE/debootstrap.log" >&2; die "debootstrap failed (log: $STATE/debootstrap.log)"; }
  # The host's apt sources and settings (the same mirror and snapshot rules) and its CA
  # certificates (update-ca-certificates adds them once ca-certificates is installed).
  rm -f "$dir/etc/apt/sources.list"
  cp -a /etc/apt/sources.list.d/*.sources "$dir/etc/apt/sources.list.d/" 2>/dev/null || true
  [ -f /etc/apt/sources.list ] && cp -a /etc/apt/sources.list "$dir/etc/apt/" || true
  for f in /etc/apt/apt.conf.d/*; do
    case "$(basename "$f")" in *packagekit*|*appstream*|*needrestart*) ;; *) cp -a "$f" "$dir/etc/apt/apt.conf.d/" ;; esac
  done
  # Slim like the official image: no caches after apt runs, and no docs, man pages or
  # translations (now, and from packages installed later).
  cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
  cat >"$dir/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CONF
  find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  find "$dir/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
  mkdir -p "$dir/usr/local/share/ca-certificates"
  cp -a /usr/local/share/ca-certificates/. "$dir/usr/local/share/ca-certificates/" 2>/dev/null || true
  # Like the official slim image: no apt caches or package lists.
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/* "$dir"/usr/share/man/* "$dir"/usr/share/info/*
  tar -C "$dir" -c . | "$DOCKER" import -c 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
  rm -rf "$dir"
  say "debian:bookworm-slim stand-in imported in $((SECONDS - start)) s"
}

standin() { # image, directory under tests/containers/standins
  have "$1" && { say "$1 present"; return; }
  local start=$SECONDS
  say "$1 absent: building the stand-in from tests/containers/standins/$2"
  DOCKER_BUILDKIT=1 "$DOCKER" build -q -t "$1" "$ROOT/tests/containers/standins/$2" >"$STATE/standin-$2.log" 2>&1 \
    || { tail -n 30 "$STATE/standin-$2.log" >&2; die "building the $1 stand-in failed"; }
  say "$1 stand-in built in $((SECONDS - start)) s"
}

[ $# -gt 0 ] || set -- debian postgres redis
for what in "$@"; do
  case "$what" in
    debian) debian ;;
    postgres) debian; standin postgres:15 postgres ;;
    redis) debian; standin redis:7 redis ;;
    *) die "unknown stand-in $what (debian, postgres, redis)" ;;
  esac
done
