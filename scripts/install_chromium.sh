#!/usr/bin/env bash
# Chromium and its driver from Debian's packages, for the dashboard's browser test
# (tests/test_dashboard_browser.py) and scripts/dashboard_screenshots.py: nothing is downloaded
# from a browser vendor. Root with apt-get (CI runs as root on Debian); elsewhere one line, exit 0,
# and the browser test skips.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "[chromium] already installed: $(/usr/bin/chromium --version 2>/dev/null)" >&2; exit 0
fi
if ! command -v apt-get >/dev/null || [ "$(id -u)" -ne 0 ]; then
  echo "install_chromium: no apt-get as root here: Chromium not installed, the browser test will be skipped" >&2
  exit 0
fi
start=$SECONDS
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "[chromium] installed $(/usr/bin/chromium --version 2>/dev/null) in $((SECONDS - start)) s" >&2
