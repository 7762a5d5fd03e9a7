#!/usr/bin/env sh
# Install a headless-capable Chromium for the browser test of the samples page
# (tests/unit/test_report.py). Uses Debian/Ubuntu's apt package when run as
# root on a system with apt; otherwise prints how to install it and exits 0,
# so it is safe to call from setup scripts. The test finds the browser at
# $SPECTRON_KIT_CHROMIUM, /usr/bin/chromium, or chromium / chromium-browser /
# google-chrome on PATH.
#
#   sh tools/install_browser.sh
set -eu

for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then
        echo "found $(command -v "$name"): $("$name" --version 2>/dev/null || echo 'version unknown')"
        exit 0
    fi
done

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium with apt-get ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian names the package "chromium"; older Ubuntu releases "chromium-browser"
    if apt-get install -y -qq chromium >/dev/null 2>&1 || apt-get install -y -qq chromium-browser; then
        for name in chromium chromium-browser; do
            if command -v "$name" >/dev/null 2>&1; then
                echo "installed $(command -v "$name"): $("$name" --version 2>/dev/null || true)"
                exit 0
            fi
        done
    fi
    echo "apt-get could not install chromium; install a Chromium or Chrome build by hand" >&2
    exit 0
fi

cat <<'MSG'
Chromium was not found and cannot be installed automatically here (needs root and apt-get).
Install one of these, then rerun the tests:
  Debian:        sudo apt-get install chromium
  Ubuntu:        sudo apt-get install chromium-browser   (or the snap: sudo snap install chromium)
  Fedora:        sudo dnf install chromium
  macOS:         brew install --cask chromium
  any system:    install Google Chrome and set SPECTRON_KIT_CHROMIUM=/path/to/chrome
The browser test (tests/unit/test_report.py) is skipped until then.
MSG
exit 0
