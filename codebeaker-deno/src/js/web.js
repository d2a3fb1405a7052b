// Web-platform globals that deno_core leaves to embedders: timers, TextEncoder/TextDecoder,
// URL/URLSearchParams, structuredClone.

const { op_cb_url_parse } = core.ops;
const createTimer = core.createTimer;
const cancelTimer = core.cancelTimer;

// ---- timers ---------------------------------------------------------------------------
// deno_core keeps a count of referenced timers in JS beside a flag on its native timer
// handle, and the event loop waits only while that flag is set. A command terminated at its
// deadline can stop between the two (inside `setTimeout`, or while a timer fires): the count
// then stays too high, and every later timer would let its command end before it fires. So
// a stopped command's timers are cancelled, the count is brought back to zero, and a timer
// created before the stop that fires after it (a ghost) runs nothing and touches no count.
const activeTimers = new Map();
let nextTimerId = 1;
// Bumped when a stopped command's timers are cancelled: older timers are ghosts.
let timerEpoch = 0;
const { getOwnPropertySymbols } = Object;
const noop = () => {};
// Longer than any list a user timer makes matter, shorter than deno_core's TIMEOUT_MAX.
const PROBE_MS = 2 ** 30;

function startTimer(callback, delay, args, repeat) {
  if (typeof callback !== "function") {
    const source = String(callback);
    callback = () => (0, eval)(source);
  }
  const id = nextTimerId++;
  const epoch = timerEpoch;
  const ms = Math.max(0, Number(delay) || 0);
  const timer = createTimer(function fire() {
    if (epoch !== timerEpoch) {
      // `this` is the timer: a ghost leaves the count alone and never repeats.
      this[refedKey(this)] = false;
      this._idleTimeout = -1;
      return;
    }
    if (!repeat) activeTimers.delete(id);
    callback(...args);
  }, ms, undefined, repeat, true);
  activeTimers.set(id, timer);
  return id;
}

function stopTimer(id) {
  const timer = activeTimers.get(id);
  if (timer !== undefined) {
    activeTimers.delete(id);
    cancelTimer(timer);
  }
}

const setTimeout = (callback, delay = 0, ...args) => startTimer(callback, delay, args, false);
const setInterval = (callback, delay = 0, ...args) => startTimer(callback, delay, args, true);
const clearTimeout = (id) => stopTimer(id);
const clearInterval = (id) => stopTimer(id);

/** deno_core's private "referenced" symbol: the one symbol a timer carries. */
function refedKey(timer) {
  return getOwnPropertySymbols(timer)[0];
}

/** Cancels every pending timer and repairs the count (called from Rust after a command stopped). */
function cancelAllTimers() {
  for (const id of [...activeTimers.keys()]) stopTimer(id);
  timerEpoch++;
  resetTimerCount();
}

/** Brings deno_core's referenced-timer count to zero and unreferences its native handle. */
function resetTimerCount() {
  // With any timer list queued, `__processTimers(0)` answers with the count's sign: it
  // returns the first expiry, positive while the count is above zero.
  const probe = createTimer(noop, PROBE_MS, undefined, false, false, true);
  const key = refedKey(probe);
  const positive = () => core.__processTimers(0) > 0;
  // Exact steps of one: a timer whose "referenced" mark disagrees with how it was created.
  const step = (up) => {
    const timer = createTimer(noop, PROBE_MS, undefined, false, up, true);
    timer[key] = !up;
    cancelTimer(timer);
  };
  for (let i = 0; i < 1_000_000 && positive(); i++) step(false);
  // Below zero (never seen, but cheap to rule out): step up until one more would be positive.
  for (let i = 0; i < 1_000_000; i++) {
    step(true);
    if (positive()) {
      step(false);
      break;
    }
  }
  cancelTimer(probe);
  // At zero, one referenced timer made and cancelled leaves the native handle unreferenced.
  cancelTimer(createTimer(noop, PROBE_MS, undefined, false, true, true));
  // The probe moved deno_core's idea of the next expiry, and a stop inside the timer
  // callback lost the native wake-up: wake in 1 ms so the next command's event loop lets
  // deno_core schedule its lists afresh.
  core.ops.op_timer_schedule(1);
}

// ---- Math.random ------------------------------------------------------------------------
// The engine seeds its own generator from the clock when a runtime starts: guessable, and
// the same in every worker forked from one zygote. This is xoshiro128** seeded from the
// operating system the first time a session asks, so no two sessions share a sequence.
const { op_cb_random_seed } = core.ops;
let randomState = null;

function rotl(x, k) {
  return (x << k) | (x >>> (32 - k));
}

function next32() {
  const s = randomState;
  const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
  const t = s[1] << 9;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 11);
  return result;
}

/** A double in [0, 1) with 53 random bits, as `Math.random` gives. */
function random() {
  if (randomState === null) randomState = new Uint32Array(op_cb_random_seed());
  return ((next32() >>> 5) * 67108864 + (next32() >>> 6)) / 9007199254740992;
}

// ---- text encoding --------------------------------------------------------------------
function toBytes(input) {
  if (input === undefined) return new Uint8Array(0);
  if (input instanceof Uint8Array) return input;
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  if (input instanceof ArrayBuffer || input instanceof SharedArrayBuffer) return new Uint8Array(input);
  throw new TypeError("The provided value is not of type '(ArrayBuffer or ArrayBufferView)'");
}

class TextEncoder {
  get encoding() {
    return "utf-8";
  }
  encode(input = "") {
    return core.encode(String(input));
  }
  encodeInto(input, dest) {
    const bytes = core.encode(String(input));
    let written = 0;
    let read = 0;
    // Copy whole characters only.
    for (const ch of String(input)) {
      const size = core.encode(ch).length;
      if (written + size > dest.length) break;
      dest.set(bytes.subarray(written, written + size), written);
      written += size;
      read += ch.length;
    }
    return { read, written };
  }
}

class TextDecoder {
  #fatal;
  #ignoreBOM;
  constructor(label = "utf-8", options = {}) {
    const normalized = String(label).trim().toLowerCase();
    if (normalized !== "utf-8" && normalized !== "utf8" && normalized !== "unicode-1-1-utf-8") {
      throw new RangeError(`The encoding label provided ('${label}') is invalid or not supported.`);
    }
    this.#fatal = Boolean(options.fatal);
    this.#ignoreBOM = Boolean(options.ignoreBOM);
  }
  get encoding() {
    return "utf-8";
  }
  get fatal() {
    return this.#fatal;
  }
  get ignoreBOM() {
    return this.#ignoreBOM;
  }
  decode(input, _options) {
    let bytes = toBytes(input);
    if (!this.#ignoreBOM && bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
      bytes = bytes.subarray(3);
    }
    const text = core.decode(bytes.slice());
    if (this.#fatal && text.includes("\ufffd") && !core.decode(core.encode(text)).includes("\ufffd")) {
      throw new TypeError("The encoded data is not valid.");
    }
    return text;
  }
}

// ---- URL ------------------------------------------------------------------------------
const urlParts = new WeakMap();

function parseUrl(href, base) {
  return op_cb_url_parse(String(href), base === undefined ? "" : String(base));
}

class URLSearchParams {
  #list = [];
  #url = null;
  constructor(init = "") {
    if (typeof init === "string") {
      this.#parse(init);
    } else if (init && typeof init === "object") {
      const pairs = typeof init[Symbol.iterator] === "function" ? init : Object.entries(init);
      for (const pair of pairs) {
        const [k, v] = [...pair];
        this.#list.push([String(k), String(v)]);
      }
    }
  }
  #parse(text) {
    this.#list = [];
    const query = text.startsWith("?") ? text.slice(1) : text;
    for (const part of query.split("&")) {
      if (!part) continue;
      const eq = part.indexOf("=");
      const decode = (s) => {
        try {
          return decodeURIComponent(s.replaceAll("+", " "));
        } catch {
          return s;
        }
      };
      this.#list.push(eq < 0 ? [decode(part), ""] : [decode(part.slice(0, eq)), decode(part.slice(eq + 1))]);
    }
  }
  static _attach(params, url, search) {
    params.#url = url;
    params.#parse(search);
  }
  #update() {
    if (this.#url) this.#url._setSearch(this.toString());
  }
  get size() {
    return this.#list.length;
  }
  append(name, value) {
    this.#list.push([String(name), String(value)]);
    this.#update();
  }
  delete(name) {
    this.#list = this.#list.filter(([k]) => k !== String(name));
    this.#update();
  }
  get(name) {
    return this.#list.find(([k]) => k === String(name))?.[1] ?? null;
  }
  getAll(name) {
    return this.#list.filter(([k]) => k === String(name)).map(([, v]) => v);
  }
  has(name) {
    return this.#list.some(([k]) => k === String(name));
  }
  set(name, value) {
    const key = String(name);
    const index = this.#list.findIndex(([k]) => k === key);
    if (index < 0) this.#list.push([key, String(value)]);
    else {
      this.#list[index] = [key, String(value)];
      this.#list = this.#list.filter(([k], i) => k !== key || i === index);
    }
    this.#update();
  }
  sort() {
    this.#list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    this.#update();
  }
  forEach(callback, thisArg) {
    for (const [k, v] of this.#list) callback.call(thisArg, v, k, this);
  }
  *entries() {
    yield* this.#list.map(([k, v]) => [k, v]);
  }
  *keys() {
    for (const [k] of this.#list) yield k;
  }
  *values() {
    for (const [, v] of this.#list) yield v;
  }
  [Symbol.iterator]() {
    return this.entries();
  }
  toString() {
    const encode = (s) => encodeURIComponent(s).replace(/%20/g, "+").replace(/[!'()~]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
    return this.#list.map(([k, v]) => `${encode(k)}=${encode(v)}`).join("&");
  }
}

class URL {
  #searchParams = new URLSearchParams();
  constructor(url, base) {
    urlParts.set(this, parseUrl(url, base));
    URLSearchParams._attach(this.#searchParams, this, urlParts.get(this).search);
  }
  static canParse(url, base) {
    try {
      parseUrl(url, base);
      return true;
    } catch {
      return false;
    }
  }
  static parse(url, base) {
    try {
      return new URL(url, base);
    } catch {
      return null;
    }
  }
  #reparse(href) {
    urlParts.set(this, parseUrl(href));
    URLSearchParams._attach(this.#searchParams, this, urlParts.get(this).search);
  }
  _setSearch(search) {
    const p = urlParts.get(this);
    const base = p.href.slice(0, p.href.length - p.search.length - p.hash.length);
    urlParts.set(this, parseUrl(base + (search ? "?" + search : "") + p.hash));
  }
  get href() {
    return urlParts.get(this).href;
  }
  set href(value) {
    this.#reparse(value);
  }
  get origin() {
    return urlParts.get(this).origin;
  }
  get protocol() {
    return urlParts.get(this).protocol;
  }
  get username() {
    return urlParts.get(this).username;
  }
  get password() {
    return urlParts.get(this).password;
  }
  get host() {
    return urlParts.get(this).host;
  }
  get hostname() {
    return urlParts.get(this).hostname;
  }
  get port() {
    return urlParts.get(this).port;
  }
  get pathname() {
    return urlParts.get(this).pathname;
  }
  set pathname(value) {
    const p = urlParts.get(this);
    const path = String(value).startsWith("/") ? String(value) : "/" + value;
    this.#reparse(p.origin + path + p.search + p.hash);
  }
  get search() {
    return urlParts.get(this).search;
  }
  set search(value) {
    const text = String(value);
    this._setSearch(text.startsWith("?") ? text.slice(1) : text);
    URLSearchParams._attach(this.#searchParams, this, urlParts.get(this).search);
  }
  get hash() {
    return urlParts.get(this).hash;
  }
  set hash(value) {
    const p = urlParts.get(this);
    const text = String(value);
    const base = p.href.slice(0, p.href.length - p.hash.length);
    this.#reparse(base + (text ? (text.startsWith("#") ? text : "#" + text) : ""));
  }
  get searchParams() {
    return this.#searchParams;
  }
  toString() {
    return this.href;
  }
  toJSON() {
    return this.href;
  }
}

// ---- structuredClone ------------------------------------------------------------------
function structuredClone(value) {
  try {
    return core.structuredClone(value);
  } catch (error) {
    if (error instanceof Error && /serializ|clone/i.test(error.message)) {
      throw new DOMException(error.message, "DataCloneError");
    }
    throw error;
  }
}
