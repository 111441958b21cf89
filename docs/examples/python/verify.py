#!/usr/bin/env python3
"""Check that the events a hookgate gateway produced are on Kafka as expected.

    python3 verify.py --brokers HOST:PORT --expect FILE --schema PATH [--schema PATH]

FILE is a JSON array of expected events (see ../README.md#verifiers). Every listed
topic is read from the beginning with assign() (no consumer group, nothing committed),
each record is decoded with consume.decode (the CloudEvents SDK's Kafka binding), and
each expected event is looked up by id and checked. Prints `ok <id> <mode>
<bodyencoding>` or `FAIL <id>: <reason>` per event and exits 0 only if all pass.
Each structured event is validated against the --schema whose `$id` is its
`dataschema` (webhook-v1.json, poll-v1.json, rejection-v1.json).
"""

import argparse
import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # noqa: E402
from jsonschema import Draft202012Validator  # noqa: E402

from consume import decode, github_signature_ok, header  # noqa: E402

TIMEOUT_S = 20.0
UNSET = object()


def read_topics(brokers, topics, wanted_ids):
    """Read `topics` from the beginning until every id in `wanted_ids` was seen or the
    time is up. Returns ({id: (msg, event, mode)}, [decode errors])."""
    consumer = Consumer({
        "bootstrap.servers": brokers,
        # librdkafka wants a group.id even for assign(); it is never joined or committed.
        "group.id": "hookgate-verify-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    })
    found, errors = {}, []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        assignment = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=TIMEOUT_S).topics[topic]
            if meta.error is not None:
                raise SystemExit(f"topic {topic}: {meta.error}")
            assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        consumer.assign(assignment)
        while not wanted_ids <= found.keys() and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                errors.append(f"kafka: {msg.error()}")
                continue
            try:
                event, mode = decode(msg)
            except Exception as e:
                errors.append(f"{msg.topic()}/{msg.partition()}@{msg.offset()}: {e}")
                continue
            found[event.get_id()] = (msg, event, mode)
    finally:
        consumer.close()
    return found, errors


def check(exp, msg, event, mode, validators):
    """The reasons `exp` does not hold for this event (empty when it does)."""
    bad = []

    def same(what, actual, expected):
        if actual != expected:
            bad.append(f"{what} is {actual!r}, expected {expected!r}")

    same("mode", mode, exp["mode"])
    same("topic", msg.topic(), exp["topic"])
    same("type", event.get_type(), exp["type"])
    same("source", event.get_source(), exp["source"])
    same("dataschema", event.get_dataschema(), exp["dataschema"])
    for ext in ("hook", "authscheme", "deliveryid", "signed"):
        if exp.get(ext) is not None:
            same(ext, event.get_extension(ext), exp[ext])
    if bad:
        return bad

    if mode == "structured":
        same("datacontenttype", event.get_datacontenttype(), "application/json")
        data = event.get_data()
        if not isinstance(data, dict):
            return bad + [f"data is {type(data).__name__}, expected an object"]
        if "reason" in exp:
            # A rejection record (urn:hookgate:rejection:v1): why and how it was refused.
            same("data.reason", data.get("reason"), exp["reason"])
            same("data.status", data.get("status"), exp["status"])
            same("data.path", data.get("path"), exp["path"])
        else:
            same("data.bodyencoding", data.get("bodyencoding"), exp.get("bodyencoding"))
            same("data.body", data.get("body", UNSET), exp.get("body"))
        # The record value itself, not the SDK's re-rendering, is what the schema describes.
        validator = validators.get(event.get_dataschema())
        if validator is None:
            return bad + [f"no --schema given for {event.get_dataschema()}"]
        for err in validator.iter_errors(json.loads(msg.value())):
            path = "/".join(str(p) for p in err.absolute_path)
            bad.append(f"schema: /{path}: {err.message}")
    else:
        expected_body = base64.b64decode(exp["body_base64"])
        body = event.get_data()
        if body != expected_body:
            bad.append(f"data is {len(body)} bytes {body[:24]!r}…, "
                       f"expected {len(expected_body)} bytes {expected_body[:24]!r}…")
        content_type = header(msg, "content-type")
        same("record content-type",
             content_type.decode("latin-1") if content_type is not None else None,
             exp.get("content_type"))
        same("datacontenttype", event.get_datacontenttype(), exp.get("content_type"))
        if exp.get("github_secret") is not None and not github_signature_ok(msg, exp["github_secret"]):
            bad.append("GitHub signature (http-x-hub-signature-256) does not verify")
    return bad


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", required=True)
    p.add_argument("--expect", required=True, help="expectations JSON file")
    p.add_argument("--schema", required=True, action="append",
                   help="event/schema/webhook-v1.json, and poll-v1.json for poller events, "
                        "rejection-v1.json for the records of refused requests")
    args = p.parse_args()

    with open(args.expect) as f:
        expected = json.load(f)
    validators = {}
    for path in args.schema:
        with open(path) as f:
            schema = json.load(f)
        Draft202012Validator.check_schema(schema)
        validators[schema["$id"]] = Draft202012Validator(schema)

    topics = sorted({e["topic"] for e in expected})
    found, errors = read_topics(args.brokers, topics, {e["id"] for e in expected})

    passed = failed = 0
    for exp in expected:
        hit = found.get(exp["id"])
        if hit is None:
            reasons = [f"not found on {exp['topic']} within {TIMEOUT_S:.0f} s"]
            if errors:
                reasons.append(f"{len(errors)} record(s) not decoded, first: {errors[0]}")
        else:
            reasons = check(exp, *hit, validators)
        if reasons:
            failed += 1
            print(f"FAIL {exp['id']}: {'; '.join(reasons)}")
        else:
            passed += 1
            print(f"ok {exp['id']} {exp['mode']} {exp.get('bodyencoding') or '-'}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 and passed > 0 else 1)


if __name__ == "__main__":
    main()
