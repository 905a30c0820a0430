#!/usr/bin/env bash
# Installs the Debian packages the local cloud and the tests need, only when they are missing:
# Java for DynamoDB Local, Node.js and npm for installing it, and the PC/SC stack for the card path:
# pcscd, the vpcd virtual reader, and libpcsclite-dev (with swig and gcc) to build pyscard; and
# Debian's chromium for the browser tests (Playwright drives it; it never downloads a browser), with a
# Japanese font so that their screenshots show the console's text rather than empty boxes.
# Runs as root (CI, dev machines) or through sudo when available.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
for package in pcscd vsmartcard-vpcd libpcsclite-dev swig gcc chromium fonts-ipafont-gothic; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "Installing system packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
