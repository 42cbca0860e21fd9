#!/bin/sh
# Installs what the steady scenario measures with and against, from
# Debian's packages: wrk (HTTP/1.1 load), h2load (h2c load, in
# nghttp2-client) and nginx (the peer, started by the harness on a loopback
# port with its own config). Idempotent: installs only what is missing, and
# does nothing, not even `apt-get update`, when all three are there.
set -eu

missing=""
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v h2load >/dev/null 2>&1 || missing="$missing nghttp2-client"
# Debian installs nginx in /usr/sbin, which a non-root PATH may lack.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"

if [ -z "$missing" ]; then
    echo "setup: wrk, h2load and nginx are installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "setup: need root (or sudo) to install:$missing" >&2
    exit 77
fi

echo "setup: installing$missing"
$sudo apt-get update
# shellcheck disable=SC2086 # one word per package
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
