// The SDK against a live server (CODEBEAKER_URL): Docker python sessions when
// CODEBEAKER_SDK_DOCKER=1, TypeScript on Deno always. Run `npm run build` first.
import assert from "node:assert/strict";
import { after, test } from "node:test";

import {
  CodeBeakerError,
  CommandExitError,
  RateLimitedError,
  Sandbox,
  SessionNotFoundError,
  TimeoutError,
} from "../dist/index.js";
import { strays } from "./schema.mjs";

// Every message of the suite matches docs/schema (see schema.mjs).
after(() => assert.deepEqual(strays, [], `messages that stray from docs/schema:\n${strays.join("\n")}`));

const url = process.env.CODEBEAKER_URL;
const docker = process.env.CODEBEAKER_SDK_DOCKER === "1";
// A server admitting 1 request/s with a burst of 2.
const limitedUrl = process.env.CODEBEAKER_RATE_LIMITED_URL;

test("typescript on deno: runCode, errors, files, reconnect", { skip: !url && "CODEBEAKER_URL names no server" }, async () => {
  const sb = await Sandbox.create({ language: "typescript", url });
  try {
    const execution = await sb.runCode("const answer: number = 6 * 7; console.log(answer)");
    assert.equal(execution.error, null);
    assert.deepEqual(execution.logs.stdout, ["42\n"]);
    const failed = await sb.runCode("throw new Error('boom')");
    assert.ok(failed.error && failed.error.value.includes("boom"), JSON.stringify(failed));
    await sb.files.write("a.txt", "from the sdk");
    assert.equal(await sb.files.read("a.txt"), "from the sdk");
    const bytes = new Uint8Array([0, 1, 2, 255]);
    await sb.files.write("b.bin", bytes);
    assert.deepEqual(await sb.files.read("b.bin", { format: "bytes" }), bytes);
    assert.deepEqual((await sb.files.list(".")).map((e) => e.name).sort(), ["a.txt", "b.bin"]);
    assert.equal(await sb.files.exists("a.txt"), true);
    assert.equal(await sb.files.exists("missing.txt"), false);
    const big = new Uint8Array(3 << 20).map((_, i) => i % 251);
    assert.equal(await sb.files.upload("big.bin", big), big.length);
    assert.deepEqual(await sb.files.download("big.bin"), big);
    await sb.files.remove("big.bin");
    assert.equal(await sb.isRunning(), true);
    const again = await Sandbox.connect(sb.sessionId, { url });
    assert.deepEqual((await again.runCode("console.log(await Deno.readTextFile('a.txt'))")).logs.stdout, ["from the sdk\n"]);
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(again.runCode("1", { signal: controller.signal }));
    await again.disconnect();
  } finally {
    await sb.close();
  }
  await assert.rejects(Sandbox.connect(sb.sessionId, { url }), SessionNotFoundError);
});

test("python on docker: value, output, commands, files", { skip: (!url || !docker) && "needs CODEBEAKER_URL and CODEBEAKER_SDK_DOCKER=1" }, async () => {
  const sb = await Sandbox.create({ language: "python", url });
  try {
  const execution = await sb.runCode("x = 41\nprint('hello')\nx + 1");
  assert.equal(execution.text, "42");
  assert.ok(execution.logs.stdout.join("").includes("hello\n"));
  const failed = await sb.runCode("raise ValueError('boom')");
  assert.deepEqual([failed.error?.name, failed.error?.value], ["ValueError", "boom"]);
  await assert.rejects(sb.runCode("import time\ntime.sleep(30)", { timeoutMs: 1000 }), TimeoutError);
  assert.equal((await sb.commands.run("echo hi")).stdout, "hi\n");
  await assert.rejects(sb.commands.run("echo out; exit 3"), (error) => error instanceof CommandExitError && error.exitCode === 3 && error.stdout === "out\n");
  const chunks = [];
  const handle = await sb.commands.run("read line; echo got $line", { background: true, onStdout: (d) => chunks.push(d) });
  await handle.sendStdin("it\n");
  assert.equal((await handle.wait({ timeoutMs: 30000 })).stdout, "got it\n");
  assert.equal(chunks.join(""), "got it\n");
  const sleeper = await sb.commands.run("sleep 100", { background: true });
  assert.equal(await sleeper.kill(), true);
  await assert.rejects(sleeper.wait({ timeoutMs: 30000 }), CommandExitError);
  const data = [];
  const terminal = await sb.pty.create({ cols: 100, rows: 30, cmd: "sh", onData: (d) => data.push(Buffer.from(d).toString()) });
  await terminal.sendStdin("stty size; exit\n");
  await terminal.wait({ timeoutMs: 30000 });
  assert.ok(data.join("").includes("30 100"), data.join(""));
  await assert.rejects(sb.files.read("missing.txt"), CodeBeakerError);
  } finally {
    // `await using sb = ...` does the same where the runtime has the syntax (Node 24).
    await sb[Symbol.asyncDispose]();
  }
});

test("a request over the rate rejects with RateLimitedError", { skip: !limitedUrl && "CODEBEAKER_RATE_LIMITED_URL names no server" }, async () => {
  const sb = await Sandbox.create({ language: "typescript", url: limitedUrl });
  let limited;
  for (let i = 0; i < 10 && !limited; i++) {
    try {
      await sb.runCode("1");
    } catch (error) {
      limited = error;
    }
  }
  assert.ok(limited instanceof RateLimitedError, String(limited));
  assert.ok(limited instanceof CodeBeakerError);
  assert.equal(limited.code, -32002);
  assert.equal(limited.kind, "rate_limited");
  assert.ok(limited.retryAfterMs > 0 && limited.retryAfterMs <= 2000, String(limited.retryAfterMs));
  await new Promise((resolve) => setTimeout(resolve, limited.retryAfterMs + 50));
  await sb.close();
});
