#!/usr/bin/env bash
# Deterministic per-request costs of grace and of plain hyper, for a shared
# or noisy machine where wall-clock throughput says little:
#
#   instructions per request  valgrind --tool=callgrind, counters zeroed after
#                             a warm-up, so start-up is not counted
#   syscalls per request      strace -c -f over the same fixed-count load
#   wire                      TCP segments and server CPU time per request
#                             under the steady scenario's h2load shapes
#                             (HTTP/1 -c64, h2c -c16 -m4, two threads):
#                             segments from /proc/net/snmp (both directions,
#                             all of loopback: run it on a quiet machine), CPU
#                             from the server's /proc/PID/task/*/schedstat
#
# Usage: bench/profile.sh [instr|syscalls|wire|all] [REQUESTS]   (default: all 20000)
# Needs valgrind, strace and h2load (bench/setup.sh installs h2load). Builds
# the release binaries first. Loopback only; every process it starts is
# stopped by its pid.
set -euo pipefail

what=${1:-all}
requests=${2:-20000}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

cargo build --release --quiet --manifest-path "$root/Cargo.toml" \
    -p grace-server -p grace-bench --bin grace --bin grace-bench-hyper
grace="$root/target/release/grace"
hyper="$root/target/release/grace-bench-hyper"

port=$((20000 + RANDOM % 20000))
cat >"$tmp/grace.toml" <<EOF
message = "Before hot reload"

[server]
listen = ["127.0.0.1:$port"]
shutdown_delay = "0s"
EOF

# Starts "$@" (a server on $port, maybe under a tool), waits until it answers.
start() {
    "$@" >"$tmp/out" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 600); do
        if h2load -n1 -c1 --h1 "http://127.0.0.1:$port/" 2>/dev/null | grep -q '1 succeeded'; then
            return
        fi
        sleep 0.1
    done
    echo "server did not start:" >&2
    cat "$tmp/out" >&2
    exit 1
}

stop() {
    kill -TERM "${pids[-1]}" 2>/dev/null || true
    wait "${pids[-1]}" 2>/dev/null || true
    unset 'pids[-1]'
}

# The load: HTTP/1 keep-alive or h2c (4 streams), 4 connections, one thread.
load() {
    local proto=$1 n=$2
    local args=(-n "$n" -c4 -t1)
    if [ "$proto" = h1 ]; then args+=(--h1); else args+=(-m4); fi
    h2load "${args[@]}" "http://127.0.0.1:$port/" >"$tmp/load" 2>&1
    grep -q "$n succeeded" "$tmp/load" || { cat "$tmp/load" >&2; exit 1; }
}

server_cmd() {
    if [ "$1" = grace ]; then
        echo "$grace serve --config $tmp/grace.toml --pid-file $tmp/grace.pid"
    else
        echo "$hyper 127.0.0.1:$port"
    fi
}

instr() {
    local server=$1 proto=$2
    # shellcheck disable=SC2046
    start valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p" $(server_cmd "$server")
    local pid=${pids[-1]}
    load "$proto" 2000
    callgrind_control -z "$pid" >/dev/null 2>&1
    load "$proto" "$requests"
    callgrind_control -d "$pid" >/dev/null 2>&1
    local ir
    ir=$(grep -h '^summary:' "$tmp"/cg."$pid".* | awk '{s += $2} END {print s}')
    printf '%-6s %-4s %10.0f instr/request\n' "$server" "$proto" "$(echo "$ir / $requests" | bc -l)"
    stop
    rm -f "$tmp"/cg.*
}

syscalls() {
    local server=$1 proto=$2
    # shellcheck disable=SC2046
    start $(server_cmd "$server")
    local pid=${pids[-1]}
    load "$proto" 2000
    strace -q -c -f -p "$pid" -o "$tmp/strace" 2>/dev/null &
    local tracer=$!
    sleep 0.5
    load "$proto" "$requests"
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    printf '%-6s %-4s syscalls/request:' "$server" "$proto"
    awk -v n="$requests" '
        $4 ~ /^[0-9]+$/ && $NF == "total" { total = $4; next }
        $4 ~ /^[0-9]+$/ && $NF ~ /^[a-z_0-9]+$/ { calls[$NF] = $4 }
        END {
            printf " total %.2f", total / n
            for (c in calls) if (calls[c] / n >= 0.01) printf "  %s %.2f", c, calls[c] / n
            printf "\n"
        }' "$tmp/strace"
    stop
}

# Loopback TCP segments sent so far, both directions, whole machine.
out_segs() {
    awk '/^Tcp:/ { if (++seen == 2) print $12 }' /proc/net/snmp
}

# Nanoseconds the process's threads have run on a CPU.
cpu_ns() {
    cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {print s}'
}

wire() {
    local server=$1 proto=$2
    # shellcheck disable=SC2046
    start $(server_cmd "$server")
    local pid=${pids[-1]}
    local args=(-t2)
    if [ "$proto" = h1 ]; then args+=(-c64 --h1); else args+=(-c16 -m4); fi
    h2load -n 2000 "${args[@]}" "http://127.0.0.1:$port/" >/dev/null 2>&1
    local segs0 cpu0 segs1 cpu1
    segs0=$(out_segs)
    cpu0=$(cpu_ns "$pid")
    h2load -n "$requests" "${args[@]}" "http://127.0.0.1:$port/" >"$tmp/load" 2>&1
    segs1=$(out_segs)
    cpu1=$(cpu_ns "$pid")
    grep -q "$requests succeeded" "$tmp/load" || { cat "$tmp/load" >&2; exit 1; }
    printf '%-6s %-4s TCP segments/request %.2f  server CPU %.2f us/request\n' "$server" "$proto" \
        "$(echo "($segs1 - $segs0) / $requests" | bc -l)" \
        "$(echo "($cpu1 - $cpu0) / $requests / 1000" | bc -l)"
    stop
}

for proto in h1 h2c; do
    for server in hyper grace; do
        case $what in
            instr) instr "$server" "$proto" ;;
            syscalls) syscalls "$server" "$proto" ;;
            wire) wire "$server" "$proto" ;;
            all) instr "$server" "$proto"; syscalls "$server" "$proto"; wire "$server" "$proto" ;;
            *) echo "usage: $0 [instr|syscalls|wire|all] [REQUESTS]" >&2; exit 64 ;;
        esac
    done
done
