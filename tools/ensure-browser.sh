#!/usr/bin/env bash
# Install Debian's chromium for the UI's browser tests (Playwright drives /usr/bin/chromium;
# it downloads no browser). Fails when chromium is still missing afterwards, so a run that
# needs it stops here with the reason rather than skipping the browser tests.
set -u
CHROMIUM="${FLOWRRA_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
echo "installing chromium (apt-get) for the browser tests"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium >/dev/null ||
  { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
if [ ! -x "$CHROMIUM" ]; then
  echo "no chromium at $CHROMIUM: install it (apt-get install chromium) to run the browser tests" >&2
  exit 1
fi
