// Checks every JSON-RPC message the SDK exchanges with the server during the suite
// against the protocol's JSON Schema (docs/schema/, generated from the server's types):
// params it sends, results and errors it receives, notifications. The SDK's socket is
// the `ws` package's WebSocket, so its send and its message events are watched here.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import Ajv2020 from "ajv/dist/2020.js";
import WebSocket from "ws";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "docs", "schema");
const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: false });
const validators = new Map();

/** Messages that stray from the schema, each named. */
export const strays = [];

function check(kind, method, document, value) {
  if (!document) {
    strays.push(`${kind} of ${method}: no schema in docs/schema/index.json`);
    return;
  }
  if (!validators.has(document)) {
    validators.set(document, ajv.compile(JSON.parse(readFileSync(join(dir, document), "utf8"))));
  }
  const validate = validators.get(document);
  if (!validate(value)) {
    const first = validate.errors?.[0];
    strays.push(`${kind} of ${method} does not match ${document}: ${first?.instancePath} ${first?.message} in ${JSON.stringify(value).slice(0, 400)}`);
  }
}

// Requests in flight per socket: id -> method.
const sent = new WeakMap();

const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data, ...rest) {
  const message = JSON.parse(String(data));
  for (const item of Array.isArray(message) ? message : [message]) {
    check("params", item.method, index.methods[item.method]?.params, item.params ?? {});
    if (item.id !== undefined) {
      if (!sent.has(this)) sent.set(this, new Map());
      sent.get(this).set(item.id, item.method);
    }
  }
  return send.call(this, data, ...rest);
};

const emit = WebSocket.prototype.emit;
WebSocket.prototype.emit = function (event, ...args) {
  if (event === "message") {
    const message = JSON.parse(String(args[0]));
    for (const item of Array.isArray(message) ? message : [message]) {
      if (item.method !== undefined) {
        check("params", item.method, index.notifications[item.method]?.params, item.params ?? {});
      } else if (item.error !== undefined) {
        check("error", "a request", index.error, item.error);
      } else {
        const method = sent.get(this)?.get(item.id);
        sent.get(this)?.delete(item.id);
        check("result", method, index.methods[method]?.result, item.result);
      }
    }
  }
  return emit.call(this, event, ...args);
};
