// `fetch`, `Headers` and `Response`: the request itself is `op_cb_fetch`, which checks
// `allowNet` for the host and every redirect before anything leaves the machine.

const { op_cb_fetch } = core.ops;

class Headers {
  #map = new Map();
  constructor(init) {
    if (init instanceof Headers) {
      for (const [k, v] of init) this.append(k, v);
    } else if (init && typeof init === "object") {
      const pairs = typeof init[Symbol.iterator] === "function" ? init : Object.entries(init);
      for (const pair of pairs) {
        const [k, v] = [...pair];
        this.append(k, v);
      }
    }
  }
  append(name, value) {
    const key = String(name).toLowerCase();
    const prev = this.#map.get(key);
    this.#map.set(key, prev === undefined ? String(value) : `${prev}, ${value}`);
  }
  set(name, value) {
    this.#map.set(String(name).toLowerCase(), String(value));
  }
  get(name) {
    return this.#map.get(String(name).toLowerCase()) ?? null;
  }
  has(name) {
    return this.#map.has(String(name).toLowerCase());
  }
  delete(name) {
    this.#map.delete(String(name).toLowerCase());
  }
  forEach(callback, thisArg) {
    for (const [k, v] of this) callback.call(thisArg, v, k, this);
  }
  *entries() {
    yield* [...this.#map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
  *keys() {
    for (const [k] of this.entries()) yield k;
  }
  *values() {
    for (const [, v] of this.entries()) yield v;
  }
  [Symbol.iterator]() {
    return this.entries();
  }
}

function bodyBytes(body) {
  if (body === undefined || body === null) return null;
  if (typeof body === "string") return core.encode(body);
  if (body instanceof URLSearchParams) return core.encode(body.toString());
  if (body instanceof Uint8Array) return body;
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  return core.encode(String(body));
}

class Response {
  #bytes;
  #used = false;
  constructor(body = null, init = {}) {
    this.#bytes = bodyBytes(body) ?? new Uint8Array(0);
    this.status = init.status ?? 200;
    this.statusText = init.statusText ?? "";
    this.headers = new Headers(init.headers);
    this.url = init.url ?? "";
    this.redirected = Boolean(init.redirected);
    this.type = "default";
  }
  get ok() {
    return this.status >= 200 && this.status < 300;
  }
  get bodyUsed() {
    return this.#used;
  }
  #consume() {
    if (this.#used) return Promise.reject(new TypeError("Body already consumed."));
    this.#used = true;
    return Promise.resolve(this.#bytes);
  }
  async arrayBuffer() {
    const bytes = await this.#consume();
    return bytes.slice().buffer;
  }
  async bytes() {
    return (await this.#consume()).slice();
  }
  async text() {
    return core.decode(await this.#consume());
  }
  async json() {
    return JSON.parse(await this.text());
  }
  clone() {
    if (this.#used) throw new TypeError("Body already consumed.");
    return new Response(this.#bytes.slice(), this);
  }
  static json(data, init = {}) {
    const headers = new Headers(init.headers);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
    return new Response(JSON.stringify(data), { ...init, headers });
  }
}

async function fetch(input, init = {}) {
  let url = input;
  let method = init.method;
  let headers = init.headers;
  let body = init.body;
  if (input && typeof input === "object" && !(input instanceof URL) && "url" in input) {
    url = input.url;
    method ??= input.method;
    headers ??= input.headers;
    body ??= input.body;
  }
  const href = new URL(String(url)).href;
  const pairs = [...new Headers(headers)];
  const bytes = bodyBytes(body);
  if (typeof body === "string" && !pairs.some(([k]) => k === "content-type")) {
    pairs.push(["content-type", "text/plain;charset=UTF-8"]);
  }
  const response = await op_cb_fetch(href, String(method ?? "GET"), pairs, bytes ?? new Uint8Array(0), bytes !== null);
  return new Response(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
    url: response.url,
    redirected: response.url !== href,
  });
}
