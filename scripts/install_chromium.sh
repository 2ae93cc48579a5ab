#!/bin/sh
# Debian's Chromium for the browser tests (Playwright cannot download its own browsers here).
# Installs it when missing and we are root on a system with apt-get; otherwise says why not,
# and the browser tests skip themselves with that reason.
set -u
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium: $CHROMIUM is missing and this is not root with apt-get: browser tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
    || echo "install_chromium: apt-get could not install chromium: browser tests will be skipped" >&2
