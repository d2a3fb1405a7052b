/**
 * CodeBeaker's TypeScript SDK: sandboxes for AI agents on a CodeBeaker server, with the
 * Python SDK's surface in camelCase and times in milliseconds (E2B's names where they fit).
 *
 * ```ts
 * import { Sandbox } from "@codebeaker/sdk";
 * await using sb = await Sandbox.create({ language: "python", url: "ws://127.0.0.1:5000" });
 * const execution = await sb.runCode("6 * 7");
 * console.log(execution.text); // 42
 * ```
 */

import WebSocket from "ws";

/** Where the SDK connects when neither `url` nor `CODEBEAKER_URL` says. */
export const DEFAULT_URL = "ws://127.0.0.1:5000";

/** Options every call takes. */
export interface CallOptions {
  /** Abandons the call (the server may still finish it). */
  signal?: AbortSignal;
}

/** A request the server refused or could not do. */
export class CodeBeakerError extends Error {
  /** The JSON-RPC error code, when the server sent one. */
  readonly code?: number;
  /** The server's detail, naming what was wrong. */
  readonly data?: unknown;
  /**
   * The kind of failure: the error object's `kind` (`rate_limited`, `timed_out`,
   * `invalid_input`...), or the envelope's `errorKind` when a command failed.
   */
  kind?: string;
  constructor(message: string, code?: number, data?: unknown, kind?: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.data = data;
    this.kind = kind;
  }
}
/** A command or a wait outlived its timeout. */
export class TimeoutError extends CodeBeakerError {}
/** No open session has this id (closed, expired, never existed, or another tenant's). */
export class SessionNotFoundError extends CodeBeakerError {}
/** The server refused the token (HTTP 401) or the origin (HTTP 403). */
export class AuthenticationError extends CodeBeakerError {}
/** The tenant's request rate was exceeded; `retryAfterMs` says when to retry. */
export class RateLimitedError extends CodeBeakerError {
  constructor(
    message: string,
    code: number | undefined,
    data: unknown,
    readonly retryAfterMs: number,
  ) {
    super(message, code, data, "rate_limited");
  }
}
/** A foreground command exited with a non-zero code; carries its result. */
export class CommandExitError extends CodeBeakerError {
  constructor(
    readonly exitCode: number,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`command exited with code ${exitCode}: ${stderr.trim().slice(-500)}`);
  }
}

/** The SDK error for a JSON-RPC error object: decided by its `kind`, never its text. */
function fromRpc(error: {
  code?: number;
  message?: string;
  data?: unknown;
  kind?: string;
  retryAfterMs?: number;
}): CodeBeakerError {
  const { code, data, kind } = error;
  const message = data ? `${error.message ?? "error"}: ${String(data)}` : (error.message ?? "error");
  switch (kind) {
    case "session_not_found":
      return new SessionNotFoundError(message, code, data, kind);
    case "rate_limited":
      return new RateLimitedError(message, code, data, error.retryAfterMs ?? 0);
    case "timed_out":
      return new TimeoutError(message, code, data, kind);
    default:
      return new CodeBeakerError(message, code, data, kind);
  }
}

/** One rich result of a run: a figure, or (`isMainResult`) the trailing value. */
export interface Result {
  text?: string;
  html?: string;
  markdown?: string;
  png?: string;
  jpeg?: string;
  svg?: string;
  json?: string;
  isMainResult: boolean;
  extra: Record<string, string>;
}

/** What a run printed, in the chunks it arrived in. */
export interface Logs {
  stdout: string[];
  stderr: string[];
}

/** The error a run raised. */
export interface ExecutionError {
  name: string;
  value: string;
  traceback: string;
}

/** The outcome of {@link Sandbox.runCode}. */
export interface Execution {
  results: Result[];
  logs: Logs;
  error: ExecutionError | null;
  executionCount: number;
  /** The main result's text, if the run ended with a value. */
  text?: string;
}

/** How a command ended. */
export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  error?: string;
}

/** An entry of {@link Files.list}. */
export interface EntryInfo {
  name: string;
  type: string;
  size: number;
  path: string;
}

const MIME_FIELDS: Record<string, keyof Result> = {
  "text/plain": "text",
  "text/html": "html",
  "text/markdown": "markdown",
  "image/png": "png",
  "image/jpeg": "jpeg",
  "image/svg+xml": "svg",
  "application/json": "json",
};

function resultsFrom(outputs: Array<{ mime: string; data: string }>): Result[] {
  return outputs.map(({ mime, data }) => {
    const result: Result = { isMainResult: mime === "text/plain", extra: {} };
    const field = MIME_FIELDS[mime];
    if (field) (result as unknown as Record<string, string>)[field] = data;
    else result.extra[mime] = data;
    return result;
  });
}

type Listener = (method: string, params: Record<string, any>) => void;

function endpoints(url?: string, token?: string): { ws: string; http: string; token?: string } {
  let base = (url ?? process.env.CODEBEAKER_URL ?? DEFAULT_URL).replace(/\/+$/, "");
  if (base.endsWith("/ws/jsonrpc")) base = base.slice(0, -"/ws/jsonrpc".length);
  const [scheme, rest] = base.includes("://") ? base.split("://", 2) : ["ws", base];
  const secure = scheme === "wss" || scheme === "https";
  const chosen = token ?? process.env.CODEBEAKER_TOKEN;
  let ws = `${secure ? "wss" : "ws"}://${rest}/ws/jsonrpc`;
  if (chosen) ws += `?token=${encodeURIComponent(chosen)}`;
  return { ws, http: `${secure ? "https" : "http"}://${rest}`, token: chosen };
}

/** One JSON-RPC connection; reopened by the next call after it drops. */
class Connection {
  readonly ws: string;
  readonly http: string;
  readonly token?: string;
  private socket: WebSocket | null = null;
  private opening: Promise<void> | null = null;
  private nextId = 0;
  private pending = new Map<number, { resolve: (m: any) => void; reject: (e: Error) => void }>();
  private streams = new Map<number, Listener>();
  private processes = new Map<string, Listener>();
  private unclaimed = new Map<string, Array<[string, Record<string, any>]>>();
  private reattach = new Map<string, () => Promise<unknown>>();
  private closed = false;

  constructor(url?: string, token?: string) {
    const found = endpoints(url, token);
    this.ws = found.ws;
    this.http = found.http;
    this.token = found.token;
  }

  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.ws, { maxPayload: 0 });
      socket.once("unexpected-response", (_request, response) => {
        const status = response.statusCode ?? 0;
        const error =
          status === 401 || status === 403
            ? new AuthenticationError(`the server refused the connection (HTTP ${status})`)
            : new CodeBeakerError(`cannot connect to ${this.ws.split("?")[0]}: HTTP ${status}`);
        reject(error);
      });
      socket.once("error", (error) => reject(new CodeBeakerError(`cannot connect: ${error.message}`)));
      socket.once("open", () => {
        this.socket = socket;
        socket.on("message", (data) => this.received(String(data)));
        socket.on("close", () => this.dropped(socket));
        socket.on("error", () => this.dropped(socket));
        resolve();
      });
    });
  }

  private dropped(socket: WebSocket): void {
    if (this.socket === socket) this.socket = null;
    for (const waiter of this.pending.values()) waiter.reject(new CodeBeakerError("the connection to the server closed"));
    this.pending.clear();
  }

  private async ensureOpen(): Promise<void> {
    if (this.closed) throw new CodeBeakerError("the sandbox is closed");
    if (this.socket) return;
    if (!this.opening) {
      this.opening = (async () => {
        await this.open();
        for (const again of this.reattach.values()) await again();
      })().finally(() => {
        this.opening = null;
      });
    }
    await this.opening;
  }

  private received(text: string): void {
    const message = JSON.parse(text);
    for (const item of Array.isArray(message) ? message : [message]) this.dispatch(item);
  }

  private dispatch(message: any): void {
    if ("id" in message && ("result" in message || "error" in message)) {
      const waiter = this.pending.get(message.id);
      this.pending.delete(message.id);
      waiter?.resolve(message);
      return;
    }
    const params = message.params ?? {};
    if (message.method === "session.output") {
      this.streams.get(params.requestId)?.(message.method, params);
    } else if (message.method === "process.output" || message.method === "process.exit") {
      const key = `${params.sessionId}/${params.pid}`;
      const listener = this.processes.get(key);
      if (listener) listener(message.method, params);
      else {
        const kept = this.unclaimed.get(key) ?? [];
        if (kept.length < 1024) kept.push([message.method, params]);
        this.unclaimed.set(key, kept);
      }
    }
  }

  listen(sessionId: string, pid: number, listener: Listener, reattach: () => Promise<unknown>): void {
    const key = `${sessionId}/${pid}`;
    this.processes.set(key, listener);
    this.reattach.set(key, reattach);
    for (const [method, params] of this.unclaimed.get(key) ?? []) listener(method, params);
    this.unclaimed.delete(key);
  }

  forget(sessionId: string, pid: number): void {
    this.processes.delete(`${sessionId}/${pid}`);
    this.reattach.delete(`${sessionId}/${pid}`);
  }

  async call(method: string, params: Record<string, unknown>, stream?: Listener, options?: CallOptions): Promise<any> {
    options?.signal?.throwIfAborted();
    await this.ensureOpen();
    const id = ++this.nextId;
    if (stream) this.streams.set(id, stream);
    try {
      const message = await new Promise<any>((resolve, reject) => {
        this.pending.set(id, { resolve, reject });
        const abort = () => {
          this.pending.delete(id);
          reject(options?.signal?.reason ?? new CodeBeakerError("aborted"));
        };
        options?.signal?.addEventListener("abort", abort, { once: true });
        this.socket!.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }), (error) => {
          if (error) reject(new CodeBeakerError(`cannot send: ${error.message}`));
        });
      });
      if (message.error) throw fromRpc(message.error);
      return message.result;
    } finally {
      this.streams.delete(id);
      this.pending.delete(id);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      await new Promise<void>((resolve) => {
        socket.once("close", () => resolve());
        socket.close();
      });
    }
  }
}

function failed(envelope: any): CodeBeakerError {
  const message: string = envelope.error ?? "the command failed";
  const kind: string | undefined = envelope.errorKind;
  return kind === "timed_out" ? new TimeoutError(message, undefined, undefined, kind) : new CodeBeakerError(message, undefined, undefined, kind);
}

/** Options of {@link Sandbox.create}. */
export interface CreateOptions extends CallOptions {
  language?: string;
  url?: string;
  token?: string;
  /** The default limit of the session's commands, in milliseconds. */
  timeoutMs?: number;
  backend?: string;
  /** Further `session.create` params (`memoryLimitMB`, `backendOptions`...). */
  options?: Record<string, unknown>;
}

/** Handlers of a command's output. */
export interface OutputOptions extends CallOptions {
  onStdout?: (data: string) => void;
  onStderr?: (data: string) => void;
  timeoutMs?: number;
}

/** A session on a CodeBeaker server. */
export class Sandbox {
  readonly sessionId: string;
  readonly language: string;
  readonly backend: string;
  /** The cluster node holding the session (its URL), on a server that is a node of a cluster. */
  readonly node?: string;
  readonly capabilities: Record<string, boolean>;
  readonly commands: Commands;
  readonly files: Files;
  readonly pty: Pty;
  /** @internal */
  readonly connection: Connection;
  private executions: number;
  private readonly timeoutMs?: number;

  private constructor(connection: Connection, info: any, timeoutMs?: number) {
    this.connection = connection;
    this.sessionId = info.sessionId;
    this.language = info.language ?? "";
    this.backend = info.backend ?? "";
    this.node = info.node ?? undefined;
    this.capabilities = info.capabilities ?? {};
    this.executions = info.executionCount ?? 0;
    this.timeoutMs = timeoutMs;
    this.commands = new Commands(this);
    this.files = new Files(this);
    this.pty = new Pty(this);
  }

  /** A new session (`language` defaults to python). */
  static async create(options: CreateOptions = {}): Promise<Sandbox> {
    const connection = new Connection(options.url, options.token);
    await connection.open();
    const params: Record<string, unknown> = { language: options.language ?? "python", ...(options.options ?? {}) };
    if (options.backend) params.backend = options.backend;
    if (options.timeoutMs) params.defaultTimeoutMs = options.timeoutMs;
    try {
      const info = await connection.call("session.create", params, undefined, options);
      return new Sandbox(connection, info, options.timeoutMs);
    } catch (error) {
      await connection.close();
      throw error;
    }
  }

  /** The open session `sessionId`, over a new connection. */
  static async connect(sessionId: string, options: { url?: string; token?: string } & CallOptions = {}): Promise<Sandbox> {
    const connection = new Connection(options.url, options.token);
    await connection.open();
    const listed = await connection.call("session.list", {}, undefined, options);
    const info = (listed.sessions ?? []).find((s: any) => s.sessionId === sessionId);
    if (!info) {
      await connection.close();
      throw new SessionNotFoundError(`no open session ${sessionId}`, -32001, sessionId, "session_not_found");
    }
    return new Sandbox(connection, info);
  }

  /** @internal */
  async execute(command: Record<string, unknown>, options: OutputOptions = {}, logs?: Logs): Promise<any> {
    const params: Record<string, unknown> = { sessionId: this.sessionId, command, errorKinds: true };
    if (command.type === "execute_code" || command.type === "execute_shell") params.stream = true;
    const limit = options.timeoutMs ?? this.timeoutMs;
    if (limit) params.timeoutMs = limit;
    const stream: Listener = (_method, p) => {
      const data: string = p.data ?? "";
      if (p.stream === "stderr") {
        logs?.stderr.push(data);
        options.onStderr?.(data);
      } else {
        logs?.stdout.push(data);
        options.onStdout?.(data);
      }
    };
    return this.connection.call("session.execute", params, stream, options);
  }

  /** Runs `code` in the session's interpreter; the program's own error is `error`. */
  async runCode(code: string, options: OutputOptions = {}): Promise<Execution> {
    const logs: Logs = { stdout: [], stderr: [] };
    const envelope = await this.execute({ type: "execute_code", code }, options, logs);
    this.executions += 1;
    if (!logs.stdout.length && !logs.stderr.length && typeof envelope.result === "string" && envelope.result) {
      logs.stdout.push(envelope.result);
    }
    let error: ExecutionError | null = null;
    if (!envelope.success) {
      if (envelope.errorKind && envelope.errorKind !== "program_failed") throw failed(envelope);
      const message: string = envelope.error ?? "";
      const split = message.indexOf(": ");
      let [name, value] = split > 0 ? [message.slice(0, split), message.slice(split + 2)] : ["Error", message];
      if (name.includes(" ")) [name, value] = ["Error", message];
      error = { name, value, traceback: logs.stderr.join("") || message };
    }
    const results = resultsFrom(envelope.outputs ?? []);
    return { results, logs, error, executionCount: this.executions, text: results.find((r) => r.isMainResult)?.text };
  }

  /** Closes the session (its sandbox and files go) and the connection. */
  async close(options?: CallOptions): Promise<void> {
    try {
      await this.connection.call("session.close", { sessionId: this.sessionId }, undefined, options);
    } catch (error) {
      if (!(error instanceof SessionNotFoundError)) throw error;
    } finally {
      await this.connection.close();
    }
  }

  /** Whether the session is still open. */
  async isRunning(options?: CallOptions): Promise<boolean> {
    const listed = await this.connection.call("session.list", {}, undefined, options);
    return (listed.sessions ?? []).some((info: any) => info.sessionId === this.sessionId);
  }

  /** Closes this connection only: the session stays open for {@link Sandbox.connect}. */
  async disconnect(): Promise<void> {
    await this.connection.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** A background command or a terminal. */
export class CommandHandle {
  pid = 0;
  stdout = "";
  stderr = "";
  exitCode: number | null = null;
  error?: string;
  private next: Record<string, number> = { stdout: 0, stderr: 0, pty: 0 };
  private exited: Promise<void>;
  private markExited!: () => void;

  /** @internal */
  constructor(
    private readonly sandbox: Sandbox,
    private readonly onStdout?: (data: string) => void,
    private readonly onStderr?: (data: string) => void,
  ) {
    this.exited = new Promise((resolve) => (this.markExited = resolve));
  }

  /** @internal */
  listen(pid: number): void {
    this.pid = pid;
    const connection = this.sandbox.connection;
    connection.listen(this.sandbox.sessionId, pid, (method, params) => this.notified(method, params), () =>
      connection.call("process.attach", { sessionId: this.sandbox.sessionId, pid }),
    );
  }

  private notified(method: string, params: Record<string, any>): void {
    if (method === "process.exit") {
      this.exitCode = params.exitCode ?? -1;
      this.error = params.reason ?? undefined;
      this.markExited();
      return;
    }
    const stream: string = params.stream ?? "stdout";
    const data: string = params.data ?? "";
    if ((params.offset ?? 0) < (this.next[stream] ?? 0)) return;
    this.next[stream] = (params.offset ?? 0) + Buffer.byteLength(data);
    if (stream === "stderr") {
      this.stderr += data;
      this.onStderr?.(data);
    } else {
      this.stdout += data;
      this.onStdout?.(data);
    }
  }

  /** @internal */
  control(method: string, params: Record<string, unknown> = {}, options?: CallOptions): Promise<any> {
    return this.sandbox.connection.call(method, { sessionId: this.sandbox.sessionId, pid: this.pid, ...params }, undefined, options);
  }

  /** Waits for the end; a non-zero exit rejects with {@link CommandExitError}. */
  async wait(options: { timeoutMs?: number } & CallOptions = {}): Promise<CommandResult> {
    const waits: Array<Promise<unknown>> = [this.exited];
    let timer: NodeJS.Timeout | undefined;
    if (options.timeoutMs) {
      waits.push(
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new TimeoutError(`process ${this.pid} did not end in time`)), options.timeoutMs);
        }),
      );
    }
    if (options.signal) {
      waits.push(new Promise((_, reject) => options.signal!.addEventListener("abort", () => reject(options.signal!.reason), { once: true })));
    }
    try {
      await Promise.race(waits);
    } finally {
      clearTimeout(timer);
    }
    this.sandbox.connection.forget(this.sandbox.sessionId, this.pid);
    const exitCode = this.exitCode ?? -1;
    if (exitCode !== 0) throw new CommandExitError(exitCode, this.stdout, this.stderr);
    return { exitCode, stdout: this.stdout, stderr: this.stderr, error: this.error };
  }

  /** Kills it; `false` when it had ended. */
  async kill(options?: CallOptions): Promise<boolean> {
    try {
      await this.control("process.signal", { signal: "KILL" }, options);
      return true;
    } catch (error) {
      if (error instanceof CodeBeakerError) return false;
      throw error;
    }
  }

  /** Writes `data` to its stdin (or its terminal). */
  async sendStdin(data: string | Uint8Array, options?: CallOptions): Promise<void> {
    const text = typeof data === "string" ? data : Buffer.from(data).toString();
    await this.control("process.write", { data: text }, options);
  }

  /** Resizes its terminal. */
  async resize(size: { cols: number; rows: number }, options?: CallOptions): Promise<void> {
    await this.control("process.resize", size, options);
  }

  /** Closes its stdin. */
  async closeStdin(options?: CallOptions): Promise<void> {
    await this.control("process.closeStdin", {}, options);
  }

  /** Stops receiving its output; it runs on. */
  disconnect(): void {
    this.sandbox.connection.forget(this.sandbox.sessionId, this.pid);
  }
}

/** Options of {@link Commands.run}. */
export interface RunOptions extends OutputOptions {
  background?: boolean;
  envs?: Record<string, string>;
  cwd?: string;
}

/** `sandbox.commands`: shell command lines, in the foreground or the background. */
export class Commands {
  /** @internal */
  constructor(private readonly sandbox: Sandbox) {}

  /** Runs `cmd` with `sh -c`: its result (non-zero exit rejects), or a handle with `background`. */
  run(cmd: string, options: RunOptions & { background: true }): Promise<CommandHandle>;
  run(cmd: string, options?: RunOptions): Promise<CommandResult>;
  async run(cmd: string, options: RunOptions = {}): Promise<CommandResult | CommandHandle> {
    if (options.background) {
      const command: Record<string, unknown> = { commandName: "sh", args: ["-c", cmd] };
      if (options.envs) command.env = options.envs;
      if (options.cwd) command.cwd = options.cwd;
      const params: Record<string, unknown> = { sessionId: this.sandbox.sessionId, command };
      if (options.timeoutMs) params.timeoutMs = options.timeoutMs;
      const handle = new CommandHandle(this.sandbox, options.onStdout, options.onStderr);
      const started = await this.sandbox.connection.call("process.start", params, undefined, options);
      handle.listen(started.pid);
      return handle;
    }
    const shell: Record<string, unknown> = { type: "execute_shell", commandName: "sh", args: ["-c", cmd] };
    if (options.envs) shell.env = options.envs;
    if (options.cwd) shell.workingDirectory = options.cwd;
    const envelope = await this.sandbox.execute(shell, options);
    if (!envelope.success) throw failed(envelope);
    const result: CommandResult = {
      exitCode: envelope.result.exitCode,
      stdout: envelope.result.stdout,
      stderr: envelope.result.stderr,
    };
    if (result.exitCode !== 0) throw new CommandExitError(result.exitCode, result.stdout, result.stderr);
    return result;
  }

  /** A handle on background process `pid`, its output replayed from the start. */
  async connect(pid: number, options: OutputOptions = {}): Promise<CommandHandle> {
    const handle = new CommandHandle(this.sandbox, options.onStdout, options.onStderr);
    handle.listen(pid);
    await handle.control("process.attach", { fromOffset: 0 }, options);
    return handle;
  }

  /** The session's background processes. */
  list(options?: CallOptions): Promise<Array<Record<string, unknown>>> {
    return this.sandbox.connection.call("process.list", { sessionId: this.sandbox.sessionId }, undefined, options);
  }
}

/** `sandbox.pty`: interactive terminals. */
export class Pty {
  /** @internal */
  constructor(private readonly sandbox: Sandbox) {}

  /** Starts `cmd` (a shell) on a terminal; `onData` gets what it writes. */
  async create(
    options: { cols?: number; rows?: number; onData?: (data: Uint8Array) => void; cmd?: string; envs?: Record<string, string>; cwd?: string } & CallOptions = {},
  ): Promise<CommandHandle> {
    const command: Record<string, unknown> = { commandName: options.cmd ?? "bash" };
    if (options.envs) command.env = options.envs;
    if (options.cwd) command.cwd = options.cwd;
    const params = { sessionId: this.sandbox.sessionId, command, pty: { cols: options.cols ?? 80, rows: options.rows ?? 24 } };
    const onText = options.onData ? (text: string) => options.onData!(Buffer.from(text)) : undefined;
    const handle = new CommandHandle(this.sandbox, onText, onText);
    const started = await this.sandbox.connection.call("process.start", params, undefined, options);
    handle.listen(started.pid);
    return handle;
  }
}

/** `sandbox.files`: the session's `/workspace`. */
export class Files {
  /** @internal */
  constructor(private readonly sandbox: Sandbox) {}

  private async command(command: Record<string, unknown>, options?: CallOptions): Promise<any> {
    const envelope = await this.sandbox.execute(command, options ?? {});
    if (!envelope.success) throw failed(envelope);
    return envelope.result;
  }

  /** Writes text or bytes to `path`, replacing it. */
  async write(path: string, data: string | Uint8Array, options?: CallOptions): Promise<EntryInfo> {
    const command =
      typeof data === "string"
        ? { type: "write_file", path, content: data }
        : { type: "write_file", path, content: Buffer.from(data).toString("base64"), encoding: "base64" };
    const written = await this.command(command, options);
    return { name: path.split("/").pop() ?? path, type: "file", size: written.bytes, path };
  }

  /** The file at `path`: text (UTF-8) by default, or bytes. */
  read(path: string, options?: { format?: "text" } & CallOptions): Promise<string>;
  read(path: string, options: { format: "bytes" } & CallOptions): Promise<Uint8Array>;
  async read(path: string, options: { format?: "text" | "bytes" } & CallOptions = {}): Promise<string | Uint8Array> {
    const read = await this.command({ type: "read_file", path, encoding: "base64" }, options);
    const bytes = Buffer.from(read.content, "base64");
    return options.format === "bytes" ? new Uint8Array(bytes) : bytes.toString("utf8");
  }

  /** The entries of the directory at `path`, sorted by name. */
  async list(path = ".", options?: CallOptions): Promise<EntryInfo[]> {
    const listed = await this.command({ type: "list_directory", path }, options);
    const base = String(listed.path ?? path).replace(/\/+$/, "");
    return (listed.entries ?? []).map((e: any) => ({ name: e.name, type: e.type, size: e.size ?? 0, path: `${base}/${e.name}` }));
  }

  /** Deletes the file (or empty directory) at `path`. */
  async remove(path: string, options?: CallOptions): Promise<void> {
    await this.command({ type: "delete_file", path }, options);
  }

  /** Creates the directory `path` and its parents. */
  async makeDir(path: string, options?: CallOptions): Promise<void> {
    await this.command({ type: "create_directory", path }, options);
  }

  /** Whether `path` exists. */
  async exists(path: string, options?: CallOptions): Promise<boolean> {
    const trimmed = path.replace(/\/+$/, "");
    const cut = trimmed.lastIndexOf("/");
    const [parent, name] = cut >= 0 ? [trimmed.slice(0, cut) || "/", trimmed.slice(cut + 1)] : [".", trimmed];
    try {
      return (await this.list(parent, options)).some((entry) => entry.name === name);
    } catch (error) {
      if (error instanceof CodeBeakerError) return false;
      throw error;
    }
  }

  /** Streams `data` into `path` through the file routes, any size; the bytes written. */
  async upload(path: string, data: string | Uint8Array, options?: CallOptions): Promise<number> {
    const body = typeof data === "string" ? Buffer.from(data) : data;
    const response = await fetch(this.route(path), { method: "PUT", body, headers: this.headers(), signal: options?.signal });
    if (!response.ok) throw await httpError(response);
    const written: any = await response.json();
    return Number(written.bytes);
  }

  /** The whole file at `path`, through the file routes (any size). */
  async download(path: string, options?: CallOptions): Promise<Uint8Array> {
    const response = await fetch(this.route(path), { headers: this.headers(), signal: options?.signal });
    if (!response.ok) throw await httpError(response);
    return new Uint8Array(await response.arrayBuffer());
  }

  private route(path: string): string {
    const relative = path.startsWith("/workspace/") ? path.slice("/workspace/".length) : path.replace(/^\/+/, "");
    const quoted = relative.split("/").map(encodeURIComponent).join("/");
    return `${this.sandbox.connection.http}/v1/sessions/${this.sandbox.sessionId}/files/${quoted}`;
  }

  private headers(): Record<string, string> {
    const token = this.sandbox.connection.token;
    return token ? { Authorization: `Bearer ${token}` } : {};
  }
}

/** The SDK error for a refused file route: decided by its status and `error.code`. */
async function httpError(response: Response): Promise<CodeBeakerError> {
  const body: any = await response.json().catch(() => ({}));
  const kind: string | undefined = body?.error?.code;
  const message = `${response.status}: ${body?.error?.message ?? response.statusText}`;
  if (response.status === 401 || response.status === 403) return new AuthenticationError(message, undefined, undefined, kind);
  if (kind === "session_not_found") return new SessionNotFoundError(message, undefined, undefined, kind);
  if (kind === "timed_out") return new TimeoutError(message, undefined, undefined, kind);
  if (response.status === 429) {
    const seconds = Number(response.headers.get("retry-after") ?? "1");
    return new RateLimitedError(message, undefined, undefined, seconds * 1000);
  }
  return new CodeBeakerError(message, undefined, undefined, kind);
}
