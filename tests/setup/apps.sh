#!/usr/bin/env bash
# Installs what the `grace run` tests supervise, into target/run-apps/:
# gunicorn and uvicorn in a Python virtual environment (from PyPI), and a
# stdlib-only Go server built with Debian's Go. Idempotent: a rerun with
# everything in place returns at once. Prints nothing on success but the
# directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${GRACE_APPS_DIR:-$root/target/run-apps}"
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

need=()
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v go >/dev/null 2>&1 || need+=(golang-go)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends python3 "${need[@]}" >/dev/null
fi

if [ ! -x "$out/venv/bin/gunicorn" ] || [ ! -x "$out/venv/bin/uvicorn" ]; then
  rm -rf "$out/venv"
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install --quiet --disable-pip-version-check gunicorn uvicorn >&2
fi

go_src="$root/tests/apps/goserver/main.go"
if [ ! -x "$out/goserver" ] || [ "$go_src" -nt "$out/goserver" ]; then
  # No module downloads: stdlib only, GOPATH mode, caches under target/.
  GOCACHE="$out/gocache" GOPATH="$out/gopath" GO111MODULE=off GOFLAGS= \
    go build -o "$out/goserver.tmp" "$go_src" >&2
  mv "$out/goserver.tmp" "$out/goserver"
fi
echo "$out"
