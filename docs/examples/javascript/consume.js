#!/usr/bin/env node
// Read hookgate events from a Kafka topic with kafkajs and the CloudEvents SDK.
//
//   node consume.js --brokers HOST:PORT --topic T [--from-beginning] [--github-secret S] [--group G]
//
// Structured and binary events are decoded alike by the SDK's Kafka protocol binding
// (`Kafka.isEvent` / `Kafka.toEvent` of the `cloudevents` package). For binary-mode
// events that came from a GitHub-signed hook, --github-secret re-verifies
// X-Hub-Signature-256 over the exact bytes the sender posted. See ../README.md and
// ../../events.md.
"use strict";

const crypto = require("node:crypto");
const { Kafka: KafkaJS, CompressionCodecs, CompressionTypes, logLevel } = require("kafkajs");
const LZ4Codec = require("kafkajs-lz4");
const { Kafka: KafkaBinding } = require("cloudevents");

// The gateway's producer compresses with LZ4 (kafka.properties `compression.type`), and
// kafkajs reads only GZIP by itself: without this codec it fails with
// "KafkaJSNotImplemented: LZ4 compression not implemented".
CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec;

const STRUCTURED_CONTENT_TYPE = "application/cloudevents+json";

// kafkajs gives header values as Buffers, or arrays of them when a name repeats.
function firstHeader(message, name) {
  for (const [key, value] of Object.entries(message.headers || {})) {
    if (key.toLowerCase() === name && value !== undefined) {
      return Buffer.isBuffer(value) ? value : value[0];
    }
  }
  return undefined;
}

// Decode one kafkajs message into { event, mode: "structured" | "binary" }.
//
// As the Kafka binding says: a record whose content-type starts with
// application/cloudevents+json is a structured event; otherwise one with ce_* headers
// is a binary event. Throws for anything else.
function decode(message) {
  // The binding wants string headers. It maps only ce_* and content-type; the
  // http-<name> headers are the sender's own, so they are not handed to it.
  const headers = {};
  for (const name of Object.keys(message.headers || {})) {
    const lower = name.toLowerCase();
    const raw = firstHeader(message, lower);
    if ((lower.startsWith("ce_") || lower === "content-type") && raw !== undefined) {
      headers[lower] = raw.toString("utf8");
    }
  }
  const value = message.value || Buffer.alloc(0);
  const mode = (headers["content-type"] || "").toLowerCase().startsWith(STRUCTURED_CONTENT_TYPE)
    ? "structured"
    : "binary";
  const kafkaMessage = {
    key: message.key,
    headers,
    // Structured: the event JSON as text. Binary: the body as a plain Uint8Array, so
    // that the SDK keeps it as bytes (given a Buffer or a string with an
    // application/json content-type it would JSON.parse the body, and the exact
    // bytes, which a signature covers, would be lost).
    value: mode === "structured" ? value.toString("utf8") : new Uint8Array(value.buffer, value.byteOffset, value.length),
  };
  kafkaMessage.body = kafkaMessage.value;
  if (!KafkaBinding.isEvent(kafkaMessage)) {
    throw new Error("not a CloudEvent (no cloudevents content-type, no ce_id)");
  }
  const event = KafkaBinding.toEvent(kafkaMessage);
  return { event, mode };
}

// The data of a binary-mode event as a Buffer: the request body, byte for byte.
function binaryData(event) {
  const data = event.data;
  if (data === undefined || data === null) return Buffer.alloc(0);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

// Re-verify GitHub's X-Hub-Signature-256 on a binary-mode record. GitHub signs the body
// exactly as sent: in binary mode that is the record value. The signature arrives as
// the record header http-x-hub-signature-256.
function githubSignatureOk(message, secret) {
  const signature = firstHeader(message, "http-x-hub-signature-256");
  if (signature === undefined) return false;
  const expected = Buffer.from(
    "sha256=" + crypto.createHmac("sha256", secret).update(message.value || Buffer.alloc(0)).digest("hex"),
  );
  return signature.length === expected.length && crypto.timingSafeEqual(signature, expected);
}

function show(message, event, mode, githubSecret) {
  console.log(`${event.type}  ${event.source}  ${event.id}  (${mode})`);
  if (mode === "structured") {
    const data = event.data; // the `data` object of ../../events.md#structured-mode
    console.log(`  ${data.method} ${data.path}  bodyencoding=${data.bodyencoding}`);
    console.log(`  body: ${JSON.stringify(data.body)}`);
  } else {
    const body = binaryData(event);
    let shown;
    try {
      shown = JSON.stringify(new TextDecoder("utf-8", { fatal: true }).decode(body));
    } catch {
      shown = `${body.length} bytes: ${body.subarray(0, 32).toString("hex")}${body.length > 32 ? "…" : ""}`;
    }
    console.log(`  ${event.httpmethod} ${event.httppath}  content-type=${event.datacontenttype}`);
    console.log(`  body: ${shown}`);
    if (githubSecret !== undefined) {
      console.log(`  github signature: ${githubSignatureOk(message, githubSecret) ? "valid" : "INVALID"}`);
    }
  }
}

// --name value and --flag arguments into an object.
function parseArgs(argv, flags) {
  const args = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)$/.exec(argv[i]);
    if (!m) throw new Error(`unexpected argument ${argv[i]}`);
    args[m[1]] = flags.includes(m[1]) ? true : argv[++i];
    if (args[m[1]] === undefined) throw new Error(`${argv[i - 1]} needs a value`);
  }
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2), ["from-beginning"]);
  if (!args.brokers || !args.topic) {
    console.error("usage: node consume.js --brokers HOST:PORT --topic T [--from-beginning] [--github-secret S] [--group G]");
    process.exit(2);
  }
  const kafka = new KafkaJS({
    clientId: "hookgate-example",
    brokers: args.brokers.split(","),
    logLevel: logLevel.WARN,
  });
  // kafkajs has no manual assignment: without --group, join a throwaway group and
  // commit nothing, so no one's offsets move.
  const consumer = kafka.consumer({ groupId: args.group || `hookgate-example-${crypto.randomUUID()}` });
  await consumer.connect();
  await consumer.subscribe({ topics: [args.topic], fromBeginning: Boolean(args["from-beginning"]) });

  const stop = async () => {
    await consumer.disconnect();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);

  await consumer.run({
    autoCommit: Boolean(args.group),
    eachMessage: async ({ topic, partition, message }) => {
      let decoded;
      try {
        decoded = decode(message);
      } catch (e) {
        // Not an event, or a malformed one: report and go on.
        console.error(`skipped ${topic}/${partition}@${message.offset}: ${e.message}`);
        return;
      }
      show(message, decoded.event, decoded.mode, args["github-secret"]);
    },
  });
}

module.exports = { decode, binaryData, firstHeader, githubSignatureOk, parseArgs };

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
