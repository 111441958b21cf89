"""A hand-written GitHub webhook endpoint in Python, to compare hookgate with.

This is not part of hookgate. It is the endpoint a team would typically write instead of
running a gateway: Starlette under uvicorn, with confluent-kafka as the producer. The
load-test harness runs the same scenario against it as against hookgate (see README.md
beside this file), so hookgate's figures can be read against a realistic alternative and
not only against the bare-hyper baseline.

It does what the `github` hook of loadtest/scenarios/gateway.toml does:

    POST /hooks/github  check X-Hub-Signature-256 (401), take a JSON body (400) of at most
                        1 MiB (413), wrap it in a CloudEvents 1.0 structured-mode event,
                        produce that to PEER_TOPIC keyed by X-GitHub-Delivery, and answer
                        202 {"id": "<event id>"}
    GET  /readyz        200 once the producer has read the topic's metadata

PEER_MODE chooses when the 202 is sent:

    ack   (default) once the broker has acknowledged the event, as hookgate does; a failed
          delivery is answered 503 with Retry-After: 1
    fire  as soon as the event is handed to the producer; an event lost after that is
          lost silently

Other settings, from the environment: PEER_BROKERS (default 127.0.0.1:9092), PEER_TOPIC
(loadtest.github) and PEER_GITHUB_SECRET (loadtest-github-secret).

Run it from the repository root:

    python3 -m pip install -r loadtest/peers/requirements.txt
    PEER_MODE=ack uvicorn --app-dir loadtest/peers asgi_kafka:app --host 127.0.0.1 \\
        --port 8090 --workers 1 --no-access-log --loop uvloop --http httptools
"""

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import threading
import uuid
from datetime import datetime, timezone

from confluent_kafka import KafkaException, Producer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

MODE = os.environ.get("PEER_MODE", "ack")
BROKERS = os.environ.get("PEER_BROKERS", "127.0.0.1:9092")
TOPIC = os.environ.get("PEER_TOPIC", "loadtest.github")
SECRET = os.environ.get("PEER_GITHUB_SECRET", "loadtest-github-secret").encode()

if MODE not in ("ack", "fire"):
    raise SystemExit(f"PEER_MODE must be `ack` or `fire`, not `{MODE}`")

PATH = "/hooks/github"
MAX_BODY = 1024 * 1024
RECORD_HEADERS = [("content-type", b"application/cloudevents+json")]
PRODUCER_CONFIG = {
    "bootstrap.servers": BROKERS,
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "compression.type": "lz4",
    # Room for the largest accepted body and the event around it (librdkafka's default is
    # 1,000,000 bytes, less than MAX_BODY).
    "message.max.bytes": MAX_BODY + 64 * 1024,
    # Give up on a delivery after 5 s, hookgate's default ack timeout, not librdkafka's 5 min.
    "delivery.timeout.ms": 5000,
}

# uvicorn's own logger, so that messages come out in its format.
log = logging.getLogger("uvicorn.error")


class Sink:
    """The Kafka producer, and in `ack` mode the thread that serves its delivery reports."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.producer = Producer(PRODUCER_CONFIG)
        self.ready = False
        self.stopping = threading.Event()
        self.poller = None
        if MODE == "ack":
            self.poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
            self.poller.start()

    async def send(self, key: str | None, value: bytes) -> None:
        """Produces one record; in `ack` mode, returns once the broker acknowledged it.

        Raises BufferError when the producer's queue is full and KafkaException when the
        delivery failed.
        """
        if MODE == "ack":
            acked = self.loop.create_future()
            self.producer.produce(
                TOPIC, value, key, headers=RECORD_HEADERS,
                on_delivery=functools.partial(self._report, acked),
            )
            await acked
        else:
            self.producer.produce(
                TOPIC, value, key, headers=RECORD_HEADERS, on_delivery=self._log_failure
            )
            self.producer.poll(0)  # serve the delivery reports that are due, without waiting

    def _poll(self) -> None:
        while not self.stopping.is_set():
            self.producer.poll(0.1)

    def _report(self, acked: asyncio.Future, err, _msg) -> None:
        # Called on the poll thread: hand the outcome over to the event loop's thread.
        self.loop.call_soon_threadsafe(settle, acked, err)

    @staticmethod
    def _log_failure(err, _msg) -> None:
        if err is not None:
            log.warning("event lost after its 202: %s", err)

    async def wait_for_topic(self) -> None:
        """Sets `ready` once the producer has read the topic's metadata."""
        while True:
            try:
                metadata = await asyncio.to_thread(self.producer.list_topics, TOPIC, timeout=5)
                topic = metadata.topics.get(TOPIC)
                if topic is not None and topic.error is None and topic.partitions:
                    log.info("topic %s has %d partitions: ready", TOPIC, len(topic.partitions))
                    self.ready = True
                    return
                log.info("waiting for topic %s: %s", TOPIC, topic.error if topic else "absent")
            except KafkaException as e:
                log.info("waiting for the brokers at %s: %s", BROKERS, e)
            await asyncio.sleep(1)

    async def close(self) -> None:
        left = await asyncio.to_thread(self.producer.flush, 10)
        if left:
            log.warning("%d events were still undelivered at shutdown", left)
        self.stopping.set()
        if self.poller is not None:
            await asyncio.to_thread(self.poller.join)


def settle(acked: asyncio.Future, err) -> None:
    if acked.done():  # the request was cancelled meanwhile
        return
    if err is None:
        acked.set_result(None)
    else:
        acked.set_exception(KafkaException(err))


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def signature_ok(header: str | None, body: bytes) -> bool:
    if header is None:
        return False
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    # As bytes: compare_digest refuses str with characters outside ASCII.
    return hmac.compare_digest(expected.encode(), header.encode("latin-1"))


async def read_body(request: Request) -> bytes | None:
    """The whole body, or None when it is larger than MAX_BODY."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def github(request: Request) -> JSONResponse:
    body = await read_body(request)
    if body is None:
        return error(413, "body larger than 1 MiB")
    if not signature_ok(request.headers.get("x-hub-signature-256"), body):
        return error(401, "missing or invalid signature")
    try:
        payload = json.loads(body)
    except ValueError:
        return error(400, "body is not JSON")

    headers: dict[str, list[str]] = {}
    for name, value in request.headers.raw:  # ASGI gives the names in lower case
        headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
    event_id = str(uuid.uuid4())
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": PATH,
        "type": request.headers.get("x-github-event", "github.event"),
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "datacontenttype": "application/json",
        "data": {
            "method": "POST",
            "path": PATH,
            "headers": headers,
            "bodyencoding": "json",
            "body": payload,
        },
    }
    value = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()

    try:
        await request.app.state.sink.send(request.headers.get("x-github-delivery"), value)
    except BufferError:
        return error(503, "producer queue full", {"Retry-After": "1"})
    except KafkaException as e:
        return error(503, f"delivery failed: {e.args[0].str()}", {"Retry-After": "1"})
    return JSONResponse({"id": event_id}, status_code=202)


async def readyz(request: Request) -> PlainTextResponse:
    if request.app.state.sink.ready:
        return PlainTextResponse("ok")
    return PlainTextResponse("waiting for the topic's metadata", status_code=503)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    sink = Sink(asyncio.get_running_loop())
    app.state.sink = sink
    log.info("peer in %s mode, producing to %s at %s", MODE, TOPIC, BROKERS)
    watcher = asyncio.create_task(sink.wait_for_topic())
    try:
        yield
    finally:
        watcher.cancel()
        await sink.close()


app = Starlette(
    routes=[
        Route(PATH, github, methods=["POST"]),
        Route("/readyz", readyz, methods=["GET"]),
    ],
    lifespan=lifespan,
)
