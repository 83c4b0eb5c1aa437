#!/usr/bin/env bash
# Runs the Enlace relay and its peers in turn on this machine, the same
# workload for each, and writes bench/results/<date>.{jsonl,json,md,svg}
# (and latest.{md,svg}, which docs/performance.md embeds).
#
#   bash bench/peers.sh        # once: NATS server, nostr-rs-relay
#   bash bench/compare.sh      # 12-15 minutes on 2 quiet cores; longer on a loaded machine
#   bash bench/compare.sh --quick                 # smaller counts, ~4 minutes
#   bash bench/compare.sh --systems "enlace nats-always"  # a subset
#
# Each server runs pinned to CPU 0 and the load generator to CPU 1
# (taskset), restarted with an empty data directory for every mode. Only
# 127.0.0.0/8 is used. Every load is bounded in count and time.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
peers="$here/.peers/bin"
systems="enlace nats-always nats-default nostr"
modes="throughput rate idle backlog"
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --systems) systems="$2"; shift ;;
    --modes) modes="$2"; shift ;;
    *) echo "compare.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$quick" = 1 ]; then
  counts=(--messages 10000 --duration-secs 5 --idle-clients 1000 --hold-secs 3 --backlog 20000)
else
  counts=(--messages 50000 --duration-secs 10 --idle-clients 5000 --hold-secs 5 --backlog 100000)
fi

server_cpu=0
load_cpu=1
if [ "$(nproc)" -lt 2 ]; then load_cpu=0; fi

echo "== building (release)"
(cd "$root" && cargo build --release --quiet -p enlace-relay)
(cd "$here" && cargo build --release --quiet)
relay_bin="$root/target/release/enlace-relay"
bench_bin="$here/target/release/enlace-bench"

for s in $systems; do
  case "$s" in
    nats-*) [ -x "$peers/nats-server" ] || { echo "missing $peers/nats-server: run bench/peers.sh first" >&2; exit 1; } ;;
    nostr) [ -x "$peers/nostr-rs-relay" ] || { echo "missing $peers/nostr-rs-relay: run bench/peers.sh first" >&2; exit 1; } ;;
  esac
done

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$here/results"
stamp="$(date -u +%Y-%m-%dT%H%MZ)"
raw="$here/results/$stamp.jsonl"
logs="$here/results/$stamp-logs"   # not committed (.gitignore)
mkdir -p "$logs"
: > "$raw"
work="$(mktemp -d /tmp/enlace-bench.XXXXXX)"
server_pid=""

stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() { stop_server; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { # $1 = tcp or udp
  python3 - "$1" <<'PY'
import socket, sys
kind = socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
}

wait_tcp() { # port
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Starts system $1 with an empty data dir; sets server_pid, target, data.
start_server() {
  data="$work/data-$1-$RANDOM"
  mkdir -p "$data"
  log="$logs/$1-${mode_now:-server}.log"
  case "$1" in
    enlace)
      port="$(free_port udp)"
      # quota: the backlog mode keeps 2,000 envelopes per mailbox (default 128).
      RUST_LOG=warn taskset -c "$server_cpu" "$relay_bin" --data-dir "$data" \
        --listen "127.0.0.1:$port" --quota 4096 >"$log" 2>&1 &
      server_pid=$!
      target=""
      for _ in $(seq 1 300); do
        target="$(grep -o 'enlace://[^ ]*' "$log" | head -n1 || true)"
        [ -n "$target" ] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
      done
      [ -n "$target" ] || { echo "enlace-relay did not start:" >&2; cat "$log" >&2; return 1; }
      ;;
    nats-always|nats-default)
      port="$(free_port tcp)"
      sync=""
      [ "$1" = nats-always ] && sync="sync_interval: always"
      cat > "$work/nats.conf" <<EOF
listen: 127.0.0.1:$port
jetstream {
  store_dir: "$data"
  $sync
}
EOF
      taskset -c "$server_cpu" "$peers/nats-server" -c "$work/nats.conf" >"$log" 2>&1 &
      server_pid=$!
      wait_tcp "$port" || { echo "nats-server did not start:" >&2; cat "$log" >&2; return 1; }
      target="nats://127.0.0.1:$port"
      ;;
    nostr)
      port="$(free_port tcp)"
      cat > "$work/nostr.toml" <<EOF
[info]
relay_url = "ws://127.0.0.1:$port/"
name = "bench"
[database]
data_directory = "$data"
[network]
address = "127.0.0.1"
port = $port
[options]
reject_future_seconds = 1800
EOF
      (cd "$work" && RUST_LOG=warn exec taskset -c "$server_cpu" "$peers/nostr-rs-relay" \
        --config "$work/nostr.toml" --db "$data") >"$log" 2>&1 &
      server_pid=$!
      wait_tcp "$port" || { echo "nostr-rs-relay did not start:" >&2; cat "$log" >&2; return 1; }
      target="ws://127.0.0.1:$port"
      ;;
    *) echo "unknown system $1" >&2; return 1 ;;
  esac
  sleep 1 # let it settle (startup CPU is not counted: the probe diffs)
}

system_kind() {
  case "$1" in enlace) echo enlace ;; nats-*) echo nats ;; nostr) echo nostr ;; esac
}

started=$(date +%s)
for s in $systems; do
  for m in $modes; do
    echo "== $s / $m  (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    mode_now="$m"
    start_server "$s"
    if ! RUST_BACKTRACE=0 taskset -c "$load_cpu" "$bench_bin" --system "$(system_kind "$s")" --mode "$m" \
        --label "$s" --target "$target" --server-pid "$server_pid" --data-dir "$data" \
        --deadline-secs 300 --out "$raw" "${counts[@]}" >/dev/null 2>"$logs/bench-$s-$m.err"; then
      # anyhow prints "Error: ..." and its causes first (a backtrace may follow).
      why="$(grep -v '^$' "$logs/bench-$s-$m.err" | head -n 6 | tr '\n' ' ')"
      echo "   failed: $why (log: $logs/bench-$s-$m.err)" >&2
      printf '{"system":"%s","mode":"%s","error":%s}\n' "$s" "$m" \
        "$(printf '%s' "$why" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" >> "$raw"
    fi
    stop_server
    rm -rf "$data"
  done
done
echo "== done in $(( $(date +%s) - started )) s"

python3 "$here/report.py" "$raw" --quick "$quick"
echo "results: $here/results/$stamp.{jsonl,json,md,svg} (latest.md, latest.svg)"
