#!/usr/bin/env python3
"""Read hookgate events from a Kafka topic with confluent-kafka and the CloudEvents SDK.

    python3 consume.py --brokers HOST:PORT --topic T [--from-beginning] [--github-secret S]

Structured and binary events are decoded alike by the SDK's Kafka protocol binding
(cloudevents.core.bindings.kafka, cloudevents 2.x). For binary-mode events that came
from a GitHub-signed hook, --github-secret re-verifies X-Hub-Signature-256 over the
exact bytes the sender posted. See ../README.md and ../../events.md.
"""

import argparse
import hashlib
import hmac
import sys

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, from_structured
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"


class KeepDataBytes(JSONFormat):
    """The SDK's JSON event format, except that binary-mode data stays the record value
    byte for byte. The stock format would parse an application/json value and decode
    text, and then neither the exact body nor its signature could be checked."""

    def read_data(self, body, datacontenttype):
        return body


EVENT_FORMAT = KeepDataBytes()


def headers_of(msg):
    """The record's headers as (lowercased name, bytes) pairs, repeats kept."""
    return [(name.lower(), value or b"") for name, value in (msg.headers() or [])]


def header(msg, name):
    """The first value of a record header, or None."""
    return next((v for k, v in headers_of(msg) if k == name), None)


def decode(msg):
    """Decode one Kafka record into (CloudEvent, "structured" | "binary").

    As the Kafka binding says: a record whose content-type starts with
    application/cloudevents+json is a structured event; otherwise one with a
    ce_specversion header is a binary event. Raises ValueError for anything else.
    """
    # The binding maps only ce_* headers and content-type. The http-<name> headers are
    # the sender's own (arbitrary bytes), so they are not handed to it.
    ce_headers = {k: v for k, v in headers_of(msg) if k.startswith("ce_") or k == "content-type"}
    message = KafkaMessage(headers=ce_headers, key=msg.key(), value=msg.value() or b"")
    content_type = ce_headers.get("content-type", b"").decode("latin-1").lower()
    if content_type.startswith(STRUCTURED_CONTENT_TYPE):
        return from_structured(message, EVENT_FORMAT), "structured"
    if "ce_specversion" in ce_headers:
        return from_binary(message, EVENT_FORMAT), "binary"
    raise ValueError("not a CloudEvent (no cloudevents content-type, no ce_specversion)")


def github_signature_ok(msg, secret):
    """Re-verify GitHub's X-Hub-Signature-256 on a binary-mode record.

    GitHub signs the body exactly as sent: in binary mode that is the record value.
    The signature arrives as the record header http-x-hub-signature-256.
    """
    signature = header(msg, "http-x-hub-signature-256")
    if signature is None:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), msg.value() or b"", hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature, expected.encode())


def show(msg, event, mode, github_secret=None):
    print(f"{event.get_type()}  {event.get_source()}  {event.get_id()}  ({mode})")
    if mode == "structured":
        data = event.get_data()  # the `data` object of ../../events.md#structured-mode
        print(f"  {data['method']} {data['path']}  bodyencoding={data['bodyencoding']}")
        print(f"  body: {data['body']!r}")
    else:
        body = event.get_data()  # the request body, byte for byte
        try:
            shown = repr(body.decode("utf-8"))
        except UnicodeDecodeError:
            shown = f"{len(body)} bytes: {body[:32].hex()}{'…' if len(body) > 32 else ''}"
        print(f"  {event.get_extension('httpmethod')} {event.get_extension('httppath')}"
              f"  content-type={event.get_datacontenttype()}")
        print(f"  body: {shown}")
        if github_secret is not None:
            ok = github_signature_ok(msg, github_secret)
            print(f"  github signature: {'valid' if ok else 'INVALID'}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", required=True, help="bootstrap servers, HOST:PORT[,...]")
    p.add_argument("--topic", required=True)
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    p.add_argument("--github-secret", help="re-verify X-Hub-Signature-256 of binary events")
    p.add_argument("--group", help="join this consumer group (commits offsets); "
                                   "without it, read every partition without a group")
    args = p.parse_args()

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group or "hookgate-example-unused",
        "enable.auto.commit": bool(args.group),
        "auto.offset.reset": "earliest" if args.from_beginning else "latest",
    })
    if args.group:
        consumer.subscribe([args.topic])
    else:
        # No group: assign every partition ourselves, so no one's offsets move.
        partitions = consumer.list_topics(args.topic, timeout=10).topics[args.topic].partitions
        start = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
        consumer.assign([TopicPartition(args.topic, p, start) for p in partitions])

    try:
        while True:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                print(f"kafka: {msg.error()}", file=sys.stderr)
                continue
            try:
                event, mode = decode(msg)
            except Exception as e:  # not an event, or a malformed one: report and go on
                print(f"skipped {msg.topic()}/{msg.partition()}@{msg.offset()}: {e}", file=sys.stderr)
                continue
            show(msg, event, mode, args.github_secret)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
