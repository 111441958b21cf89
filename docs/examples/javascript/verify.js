#!/usr/bin/env node
// Check that the events a hookgate gateway produced are on Kafka as expected.
//
//   node verify.js --brokers HOST:PORT --expect FILE [--schema PATH]
//
// FILE is a JSON array of expected events (see ../README.md#verifiers). kafkajs has no
// manual partition assignment, so this joins a consumer group of its own (random id,
// nothing committed) and reads every listed topic from the beginning, decoding each
// record with consume.js's decode (the CloudEvents SDK's Kafka binding), until every
// expected id was seen or 20 s after joining. Prints `ok <id> <mode> <bodyencoding>` or
// `FAIL <id>: <reason>` per event and exits 0 only if all pass. --schema is accepted
// for the same command line as verify.py but not used: the Python verifier does the
// JSON Schema validation.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const { isDeepStrictEqual } = require("node:util");
const { Kafka, logLevel } = require("kafkajs");
const { decode, binaryData, firstHeader, githubSignatureOk, parseArgs } = require("./consume.js");

const READ_TIMEOUT_MS = 20_000;
const JOIN_TIMEOUT_MS = 60_000;

// Read `topics` from the beginning until every id in `wanted` was seen, or the time is
// up. Resolves to { found: Map(id → { topic, message, event, mode }), errors: [records
// not decoded], timedOut: why reading stopped early, or null }.
async function readTopics(brokers, topics, wanted) {
  const kafka = new Kafka({ clientId: "hookgate-verify", brokers: brokers.split(","), logLevel: logLevel.WARN });
  const consumer = kafka.consumer({
    groupId: `hookgate-verify-${crypto.randomUUID()}`,
    // A short session: some brokers (Tansu) hold a new member's join for half of it.
    sessionTimeout: 10_000,
    heartbeatInterval: 3_000,
  });
  const found = new Map();
  const errors = [];
  let timedOut = null;
  let finish;
  const done = new Promise((resolve) => (finish = resolve));
  let timer = setTimeout(() => finish(`not joined to a consumer group within ${JOIN_TIMEOUT_MS / 1000} s`), JOIN_TIMEOUT_MS);
  consumer.on(consumer.events.GROUP_JOIN, () => {
    clearTimeout(timer);
    timer = setTimeout(() => finish(`${READ_TIMEOUT_MS / 1000} s after joining`), READ_TIMEOUT_MS);
  });
  consumer.on(consumer.events.CRASH, (e) => finish(`consumer crashed: ${e.payload.error}`));

  await consumer.connect();
  try {
    await consumer.subscribe({ topics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message }) => {
        let decoded;
        try {
          decoded = decode(message);
        } catch (e) {
          errors.push(`${topic}/${partition}@${message.offset}: ${e.message}`);
          return;
        }
        found.set(decoded.event.id, { topic, message, ...decoded });
        if ([...wanted].every((id) => found.has(id))) finish(null);
      },
    });
    timedOut = await done;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
  }
  return { found, errors, timedOut };
}

// The reasons `exp` does not hold for this event (empty when it does).
function check(exp, { topic, message, event, mode }) {
  const bad = [];
  const same = (what, actual, expected) => {
    if (!isDeepStrictEqual(actual, expected)) {
      bad.push(`${what} is ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
    }
  };
  same("mode", mode, exp.mode);
  same("topic", topic, exp.topic);
  same("type", event.type, exp.type);
  same("source", event.source, exp.source);
  same("dataschema", event.dataschema, exp.dataschema);
  for (const ext of ["hook", "authscheme", "deliveryid", "signed"]) {
    if (exp[ext] !== undefined && exp[ext] !== null) same(ext, event[ext], exp[ext]);
  }
  if (bad.length) return bad;

  if (mode === "structured") {
    same("datacontenttype", event.datacontenttype, "application/json");
    const data = event.data;
    if (data === null || typeof data !== "object" || Array.isArray(data)) {
      return [...bad, `data is ${JSON.stringify(data)}, expected an object`];
    }
    if (exp.reason !== undefined) {
      // A rejection record (urn:hookgate:rejection:v1): why and how it was refused.
      same("data.reason", data.reason, exp.reason);
      same("data.status", data.status, exp.status);
      same("data.path", data.path, exp.path);
    } else {
      same("data.bodyencoding", data.bodyencoding, exp.bodyencoding ?? null);
      same("data.body", data.body, exp.body ?? null);
    }
  } else {
    const expected = Buffer.from(exp.body_base64, "base64");
    const body = binaryData(event);
    if (!body.equals(expected)) {
      bad.push(`data is ${body.length} bytes ${body.subarray(0, 24).toString("hex")}…, ` +
        `expected ${expected.length} bytes ${expected.subarray(0, 24).toString("hex")}…`);
    }
    const contentType = firstHeader(message, "content-type");
    same("record content-type", contentType === undefined ? null : contentType.toString("latin1"), exp.content_type ?? null);
    same("datacontenttype", event.datacontenttype ?? null, exp.content_type ?? null);
    if (exp.github_secret != null && !githubSignatureOk(message, exp.github_secret)) {
      bad.push("GitHub signature (http-x-hub-signature-256) does not verify");
    }
  }
  return bad;
}

async function main() {
  const args = parseArgs(process.argv.slice(2), []);
  if (!args.brokers || !args.expect) {
    console.error("usage: node verify.js --brokers HOST:PORT --expect FILE [--schema PATH]");
    process.exit(2);
  }
  const expected = JSON.parse(fs.readFileSync(args.expect, "utf8"));
  const topics = [...new Set(expected.map((e) => e.topic))].sort();
  const { found, errors, timedOut } = await readTopics(args.brokers, topics, new Set(expected.map((e) => e.id)));

  let passed = 0;
  let failed = 0;
  for (const exp of expected) {
    const hit = found.get(exp.id);
    let reasons;
    if (hit === undefined) {
      reasons = [`not found on ${exp.topic}${timedOut ? ` (${timedOut})` : ""}`];
      if (errors.length) reasons.push(`${errors.length} record(s) not decoded, first: ${errors[0]}`);
    } else {
      reasons = check(exp, hit);
    }
    if (reasons.length) {
      failed++;
      console.log(`FAIL ${exp.id}: ${reasons.join("; ")}`);
    } else {
      passed++;
      console.log(`ok ${exp.id} ${exp.mode} ${exp.bodyencoding || "-"}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
