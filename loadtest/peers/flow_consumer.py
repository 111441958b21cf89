"""A hand-written flow consumer in Python, to compare hookgate-consumer with.

This is not part of hookgate. It is what a team would typically write instead of running
hookgate-consumer for one flow with one `http` task: confluent-kafka reads the gateway's
structured CloudEvents, httpx (one pooled async client, keep-alive) POSTs each order to an
API, and offsets are committed once every call of a batch has been answered, so events
are processed at least once, as hookgate-consumer does.

    for each event: {"order": data.body.order_id, "total": data.body.total} -> POST PEER_URL
                    (200 or 202 expected; anything else is retried once, then counted)

It stops after PEER_EVENTS events and prints one JSON line: the events handled, the
seconds from the first to the last, and the CPU seconds the process used (all threads,
librdkafka's included) over that time.

Settings, from the environment: PEER_BROKERS (127.0.0.1:9092), PEER_TOPIC (required),
PEER_GROUP (PEER_TOPIC + "-py"), PEER_URL (required), PEER_EVENTS (100000),
PEER_IN_FLIGHT (64, calls at once).

The consumer bench (benches/consumer.rs) runs it beside hookgate-consumer when
CONSUMER_BENCH_PYTHON=1; it needs `pip install -r loadtest/peers/requirements.txt`.
"""

import asyncio
import json
import os
import sys
import time

import httpx
from confluent_kafka import Consumer, KafkaError


def settings():
    topic = os.environ.get("PEER_TOPIC")
    url = os.environ.get("PEER_URL")
    if not topic or not url:
        sys.exit("set PEER_TOPIC and PEER_URL")
    return {
        "brokers": os.environ.get("PEER_BROKERS", "127.0.0.1:9092"),
        "topic": topic,
        "group": os.environ.get("PEER_GROUP", topic + "-py"),
        "url": url,
        "events": int(os.environ.get("PEER_EVENTS", "100000")),
        "in_flight": int(os.environ.get("PEER_IN_FLIGHT", "64")),
    }


async def call(client, limit, url, payload):
    async with limit:
        for attempt in range(2):
            try:
                response = await client.post(url, json=payload)
                if response.status_code in (200, 202):
                    return True
            except httpx.HTTPError:
                if attempt == 1:
                    return False
        return False


async def main():
    s = settings()
    consumer = Consumer(
        {
            "bootstrap.servers": s["brokers"],
            "group.id": s["group"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # As the hookgate bench: Tansu answers a fetch when this wait ends.
            "fetch.wait.max.ms": 5,
        }
    )
    consumer.subscribe([s["topic"]])
    limit = asyncio.Semaphore(s["in_flight"])
    limits = httpx.Limits(max_connections=s["in_flight"], max_keepalive_connections=s["in_flight"])
    loop = asyncio.get_running_loop()
    done = failed = 0
    first = first_cpu = None
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:
        while done < s["events"]:
            batch = await loop.run_in_executor(None, lambda: consumer.consume(500, 0.5))
            calls = []
            for message in batch:
                if message.error():
                    if message.error().code() != KafkaError._PARTITION_EOF:
                        print(f"kafka: {message.error()}", file=sys.stderr)
                    continue
                event = json.loads(message.value())
                body = event.get("data", {}).get("body", {})
                payload = {"order": body.get("order_id"), "total": body.get("total")}
                calls.append(call(client, limit, s["url"], payload))
            if not calls:
                continue
            if first is None:
                first, first_cpu = time.monotonic(), time.process_time()
            results = await asyncio.gather(*calls)
            done += len(results)
            failed += results.count(False)
            consumer.commit(asynchronous=False)
    seconds = time.monotonic() - first
    cpu = time.process_time() - first_cpu
    consumer.close()
    print(json.dumps({"events": done, "failed": failed, "seconds": seconds, "cpu_seconds": cpu}))


if __name__ == "__main__":
    asyncio.run(main())
