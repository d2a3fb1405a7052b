// The `console` object: Deno's methods and formatting, output captured per command by
// `op_cb_print` (stdout for log/info/debug/dir/table, stderr for warn/error/trace/assert).

const print = core.ops.op_cb_print;

let groupIndent = "";
const counts = new Map();
const timers = new Map();

function write(text, isErr) {
  const indented = groupIndent ? groupIndent + text.replaceAll("\n", "\n" + groupIndent) : text;
  print(indented + "\n", isErr);
}

function table(data, columns) {
  if (data === null || typeof data !== "object") return write(formatArgs([data]), false);
  const rows = [];
  const keys = [];
  const addKey = (k) => {
    if (!keys.includes(k)) keys.push(k);
  };
  let hasValues = false;
  const entries = data instanceof Map ? [...data.entries()] : Object.entries(data);
  for (const [index, row] of entries) {
    const cells = { "(idx)": String(index) };
    if (row !== null && typeof row === "object") {
      for (const [k, v] of Object.entries(row)) {
        if (columns && !columns.includes(k)) continue;
        addKey(k);
        cells[k] = inspect(v);
      }
    } else {
      hasValues = true;
      cells["Values"] = inspect(row);
    }
    rows.push(cells);
  }
  const header = ["(idx)", ...keys, ...(hasValues ? ["Values"] : [])];
  const widths = header.map((h) => Math.max(h.length, ...rows.map((r) => (r[h] ?? "").length)) + 2);
  const center = (text, width) => {
    const left = Math.floor((width - text.length) / 2);
    return " ".repeat(left) + text + " ".repeat(width - text.length - left);
  };
  const line = (l, m, r) => l + widths.map((w) => "\u2500".repeat(w)).join(m) + r;
  const out = [line("\u250c", "\u252c", "\u2510"), "\u2502" + header.map((h, i) => center(h, widths[i])).join("\u2502") + "\u2502", line("\u251c", "\u253c", "\u2524")];
  for (const row of rows) out.push("\u2502" + header.map((h, i) => center(row[h] ?? "", widths[i])).join("\u2502") + "\u2502");
  out.push(line("\u2514", "\u2534", "\u2518"));
  write(out.join("\n"), false);
}

const console = {
  log: (...args) => write(formatArgs(args), false),
  info: (...args) => write(formatArgs(args), false),
  debug: (...args) => write(formatArgs(args), false),
  warn: (...args) => write(formatArgs(args), true),
  error: (...args) => write(formatArgs(args), true),
  dir: (value, options) => write(inspect(value, options ?? {}), false),
  dirxml: (...args) => write(formatArgs(args), false),
  trace: (...args) => {
    const stack = new Error().stack?.split("\n").slice(1).join("\n") ?? "";
    write(`Trace${args.length ? ": " + formatArgs(args) : ""}\n${stack}`.trimEnd(), true);
  },
  assert: (condition, ...args) => {
    if (!condition) write(`Assertion failed${args.length ? ": " + formatArgs(args) : ""}`, true);
  },
  table,
  count: (label = "default") => {
    const n = (counts.get(label) ?? 0) + 1;
    counts.set(label, n);
    write(`${label}: ${n}`, false);
  },
  countReset: (label = "default") => counts.delete(label),
  time: (label = "default") => timers.set(label, performance.now()),
  timeLog: (label = "default", ...args) => {
    const start = timers.get(label);
    if (start === undefined) return write(`Warning: No such label '${label}' for console.timeLog()`, true);
    write(`${label}: ${(performance.now() - start).toFixed(0)}ms${args.length ? " " + formatArgs(args) : ""}`, false);
  },
  timeEnd: (label = "default") => {
    const start = timers.get(label);
    if (start === undefined) return write(`Warning: No such label '${label}' for console.timeEnd()`, true);
    timers.delete(label);
    write(`${label}: ${(performance.now() - start).toFixed(0)}ms`, false);
  },
  group: (...args) => {
    if (args.length) write(formatArgs(args), false);
    groupIndent += "  ";
  },
  groupCollapsed: (...args) => console.group(...args),
  groupEnd: () => {
    groupIndent = groupIndent.slice(2);
  },
  clear: () => {},
};
