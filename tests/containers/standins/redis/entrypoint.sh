#!/bin/bash
# Stand-in for the official redis image's entrypoint: `redis-server …` without a config file
# gets `--protected-mode no` (clients come from other containers) and /data as its directory.
set -euo pipefail
if [ "${1:-}" = redis-server ] && [ ! -f "${2:-}" ]; then
  shift
  exec redis-server --protected-mode no --dir /data "$@"
fi
exec "$@"
