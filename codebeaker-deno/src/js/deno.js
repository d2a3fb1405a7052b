// The `Deno` namespace subset agents use. Every call goes to an op that checks the
// session's permissions and reports failures with Deno's error classes and words.

const {
  op_cb_read_file,
  op_cb_read_text_file,
  op_cb_write_file,
  op_cb_read_dir,
  op_cb_mkdir,
  op_cb_remove,
  op_cb_stat,
  op_cb_env_get,
  op_cb_env_set,
  op_cb_env_delete,
  op_cb_env_object,
} = core.ops;

function errorClass(name) {
  const cls = class extends Error {
    constructor(message, options) {
      super(message, options);
      this.name = name;
    }
  };
  Object.defineProperty(cls, "name", { value: name });
  core.registerErrorClass(name, cls);
  return cls;
}

const errors = {};
for (
  const name of [
    "NotFound",
    "PermissionDenied",
    "AlreadyExists",
    "IsADirectory",
    "NotADirectory",
    "DirectoryNotEmpty",
    "InvalidData",
    "TimedOut",
    "Http",
    "NotSupported",
    "QuotaExceeded",
  ]
) {
  errors[name] = errorClass(name);
}
// deno_core registers these two itself.
errors.Interrupted = core.Interrupted;
errors.BadResource = core.BadResource;
Object.freeze(errors);

/** A path argument: a string, or a `file:` URL. */
function pathOf(path) {
  if (path instanceof URL) {
    if (path.protocol !== "file:") throw new TypeError(`Must be a file URL, got ${path.href}`);
    return decodeURIComponent(path.pathname);
  }
  const text = String(path);
  if (text.startsWith("file://")) return decodeURIComponent(new URL(text).pathname);
  return text;
}

function bytesOf(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError("data must be a Uint8Array");
}

function fileInfo(raw) {
  const date = (ms) => (ms === null || ms === undefined ? null : new Date(ms));
  return {
    isFile: raw.isFile,
    isDirectory: raw.isDirectory,
    isSymlink: raw.isSymlink,
    size: raw.size,
    mtime: date(raw.mtime),
    atime: date(raw.atime),
    birthtime: date(raw.birthtime),
    mode: raw.mode,
  };
}

const env = Object.freeze({
  get: (name) => op_cb_env_get(String(name)) ?? undefined,
  set: (name, value) => op_cb_env_set(String(name), String(value)),
  delete: (name) => op_cb_env_delete(String(name)),
  has: (name) => op_cb_env_get(String(name)) !== null,
  toObject: () => ({ ...op_cb_env_object() }),
});

const Deno = Object.freeze({
  errors,
  env,
  args: Object.freeze([]),
  build: Object.freeze({ os: "linux", arch: "x86_64", target: "x86_64-unknown-linux-gnu", vendor: "unknown" }),
  version: Object.freeze({ deno: "2.0.0-codebeaker", v8: "quickjs-ng", typescript: "5.x (types stripped)" }),
  noColor: true,
  inspect: (value, options) => inspect(value, options ?? {}),
  cwd: () => "/workspace",
  readFile: (path) => op_cb_read_file(pathOf(path)),
  readTextFile: (path) => op_cb_read_text_file(pathOf(path)),
  writeFile: (path, data, options = {}) =>
    op_cb_write_file(pathOf(path), bytesOf(data), Boolean(options.append), options.create !== false),
  writeTextFile: (path, data, options = {}) =>
    op_cb_write_file(pathOf(path), core.encode(String(data)), Boolean(options.append), options.create !== false),
  readDir: (path) => {
    const listing = op_cb_read_dir(pathOf(path));
    return {
      async *[Symbol.asyncIterator]() {
        for (const entry of await listing) yield entry;
      },
    };
  },
  mkdir: (path, options = {}) => op_cb_mkdir(pathOf(path), Boolean(options.recursive)),
  remove: (path, options = {}) => op_cb_remove(pathOf(path), Boolean(options.recursive)),
  stat: async (path) => fileInfo(await op_cb_stat(pathOf(path), false)),
  lstat: async (path) => fileInfo(await op_cb_stat(pathOf(path), true)),
});
