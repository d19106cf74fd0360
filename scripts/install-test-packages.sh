#!/usr/bin/env bash
# Installs the Debian packages some tests drive, where this machine lets us (root with apt-get): chromium for the
# browser tests, nginx (nginx-light) for the reverse-proxy tests of the deployment files, redis-server for the tests
# of the Redis job store and the RQ worker (CNN_VIS_REDIS_URL). Elsewhere those tests
# skip with a message saying how to enable them.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's ${missing[*]} for the tests..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "note: ${missing[*]} missing and apt-get is not available as root: the tests needing them will be skipped" >&2
fi
