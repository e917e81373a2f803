#!/usr/bin/env bash
# Debian's chromium, the headless browser that tests/test_report.py renders reports in.
#
#   bash .ci/chromium.sh      # install it when missing (needs root and apt-get)
#
# Idempotent and quick: when `chromium` is already on PATH nothing else runs.  When it
# is missing, the package is installed without recommends (no desktop extras); the
# package lists are refreshed only if the first attempt cannot find the package.
set -euo pipefail

say() { printf 'chromium.sh: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
[[ "$(id -u)" == 0 ]] || die "chromium is not installed; install it (apt-get install chromium) or run this as root"
command -v apt-get >/dev/null 2>&1 || die "chromium is not installed and apt-get is missing; install Chromium by hand"

export DEBIAN_FRONTEND=noninteractive
install_chromium() { apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
say "installing chromium from the Debian packages"
if ! install_chromium 2>/dev/null; then
    apt-get update -qq
    install_chromium
fi
command -v chromium >/dev/null 2>&1 || die "the chromium package was installed but no chromium is on PATH"
say "installed $(chromium --version 2>/dev/null | head -n 1)"
