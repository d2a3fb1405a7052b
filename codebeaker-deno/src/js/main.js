// Entry point of the bootstrap: installs the globals user code expects, then removes every
// path to deno_core's internals. After this runs, the only native functions user code can
// reach are the ops behind the wrappers above; `Deno` is our own frozen namespace.

core.ops.op_cb_register_hooks(cancelAllTimers);

const globals = {
  console,
  setTimeout,
  setInterval,
  clearTimeout,
  clearInterval,
  structuredClone,
  TextEncoder,
  TextDecoder,
  URL,
  URLSearchParams,
  fetch,
  Headers,
  Response,
};
for (const [name, value] of Object.entries(globals)) {
  Object.defineProperty(globalThis, name, { value, writable: true, enumerable: false, configurable: true });
}

Object.defineProperty(Math, "random", { value: random, writable: true, enumerable: false, configurable: true });

// `Atomics.wait` blocks the session's only thread and no termination reaches it.
Object.defineProperty(Atomics, "wait", {
  value: function wait() {
    throw new TypeError("Atomics.wait is not available in CodeBeaker sessions (it would block the session)");
  },
  writable: false,
  configurable: false,
});

delete globalThis.__bootstrap;
delete globalThis.__infra;
delete globalThis.__timers;
delete globalThis.Deno;
Object.defineProperty(globalThis, "Deno", { value: Deno, writable: false, enumerable: false, configurable: false });
