#!/bin/sh
# Headless Chromium for tests/test_report.py's browser checks. Idempotent: does nothing when chromium is present.
# Needs Debian/Ubuntu and root; elsewhere it says so and the browser test is skipped (it reports why).
set -eu
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/setup_chromium.sh: chromium is missing and cannot be installed here (needs root and apt-get);" \
         "test_report's browser check will be skipped" >&2
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
