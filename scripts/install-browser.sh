#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests, where this machine lets us (root with apt-get).
# Elsewhere the browser tests skip with a message saying how to enable them.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the browser tests..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "note: /usr/bin/chromium is missing and apt-get is not available as root: browser tests will be skipped" >&2
fi
