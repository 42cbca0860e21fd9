#!/usr/bin/env bash
# Regenerates crates/grace-server/startup.order: the functions the release
# grace binary runs from exec to its first answered request and through its
# first reload, which the build script asks the linker to place together (see
# crates/grace-server/build.rs). The reload is there because every operator
# does one: left out, its code maps 64 KB stretches of its own on the first.
# Run it after a toolchain or dependency update, or when the footprint
# bench's idle RSS rises: names the build no longer has are skipped.
#
# The names are collected twice: from grace built alone (as `cargo build
# -p grace-server`, the Dockerfile and the footprint bench build it) and from
# grace built with the bench (as bench/profile.sh does), since the features
# the bench turns on in shared dependencies change their symbol hashes.
#
# Usage: bench/startup-order.sh     (needs valgrind, curl and python3; loopback only)
set -euo pipefail
export LC_ALL=C

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/crates/grace-server/startup.order"
grace="$root/target/release/grace"
tmp=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# Builds grace with cargo's "$@" and prints the functions of the binary that
# ran until its first reload was served, over two starts: some paths depend
# on timing.
collect() {
    cargo build --release --quiet --manifest-path "$root/Cargo.toml" "$@"
    run_once
    run_once
}

# Runs grace under callgrind, as the footprint bench starts it, until it
# serves a reloaded configuration, and prints the functions of the binary
# that ran.
run_once() {
    local port=$((20000 + RANDOM % 20000))
    cat >"$tmp/grace.toml" <<TOML
message = "Before hot reload"

[server]
listen = ["127.0.0.1:$port"]
shutdown_delay = "0s"

# Short, so that the keep-alive client below outlives the first ticks of its
# connection's timers (a quarter of each), as a long-lived connection does.
[limits]
header_read_timeout = "2s"
idle_timeout = "2s"
TOML
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$tmp/cg.%p" \
        "$grace" serve --config "$tmp/grace.toml" --pid-file "$tmp/grace.pid" 2>"$tmp/log" &
    pid=$!
    wait_for "Before" "$port"
    # One keep-alive client across the reload, for 3 s at least, as the
    # footprint bench's probe is: a connection's timers ticking, and
    # workers parked with a timer armed, run code of their own that would
    # otherwise fault its pages in mid-run.
    keep_alive "$port" &
    local client=$!
    sed 's/Before/After/' "$tmp/grace.toml" >"$tmp/grace.toml.new"
    mv "$tmp/grace.toml.new" "$tmp/grace.toml"
    kill -HUP "$pid"
    wait_for "After" "$port"
    touch "$tmp/stop"
    wait "$client"
    rm -f "$tmp/stop"
    # Let the work that follows the last answer (its log lines) run, then dump.
    sleep 1
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    # Callgrind names each object and function once, then refers to it by
    # number: "ob=(3) /path", later "ob=(3)"; likewise fn= and cfn=.
    awk -v bin="$grace" '
        match($0, /^c?(ob|fn)=\([0-9]+\)/) {
            head = substr($0, 1, RLENGTH); rest = substr($0, RLENGTH + 2)
            id = head; sub(/^[^(]*\(/, "", id); sub(/\)$/, "", id)
            if (head ~ /ob=/) {
                if (rest != "") obs[id] = rest
                if (head ~ /^ob=/) cur = obs[id]
            } else {
                if (rest != "") fns[id] = rest
                if (head ~ /^fn=/ && cur == bin) print fns[id]
            }
        }' "$tmp/cg.$pid.1" | sort -u >"$tmp/ran"
    nm --defined-only "$grace" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u >"$tmp/text"
    comm -12 "$tmp/ran" "$tmp/text"
    rm -f "$tmp"/cg.*
    pid=
}

# GETs / on port "$1" over one connection, 200 ms apart, for 3 s and until
# "$tmp/stop" exists.
keep_alive() {
    python3 - "$1" "$tmp/stop" <<'PY'
import http.client, os, sys, time
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
end = time.monotonic() + 3
while time.monotonic() < end or not os.path.exists(sys.argv[2]):
    conn.request("GET", "/")
    conn.getresponse().read()
    time.sleep(0.2)
PY
}

# Polls / on "$2" until its body holds "$1".
wait_for() {
    for _ in $(seq 1 600); do
        if curl -sf "http://127.0.0.1:$2/" 2>/dev/null | grep -q "$1"; then
            return
        fi
        sleep 0.1
    done
    echo "grace did not answer \"$1\" under valgrind:" >&2
    cat "$tmp/log" >&2
    exit 1
}

{
    collect -p grace-server
    collect -p grace-server -p grace-bench
} | sort -u >"$tmp/order"
mv "$tmp/order" "$out"
echo "$(wc -l <"$out") functions in $out"
