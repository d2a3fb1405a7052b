// Value formatting for console output, following Deno's `Deno.inspect` conventions:
// strings raw at the top level and double-quoted inside objects, `[ 1, 2 ]`, `{ a: 1 }`,
// `Map(1) { "a" => 1 }`, `[Function: f]`, `[class A]`, `<ref *1>`/`[Circular *1]`,
// depth 4 then `[Object]`, and entries broken onto lines past 80 columns.

const DEFAULT_DEPTH = 4;
const BREAK_LENGTH = 80;
const MAX_ARRAY_ITEMS = 100;
const MAX_STRING_LENGTH = 10000;
const COMPACT = 3;

const objectToString = Object.prototype.toString;
const fnToString = Function.prototype.toString;
const getPromiseDetails = core.getPromiseDetails;

function tagOf(value) {
  return objectToString.call(value).slice(8, -1);
}

function quote(string) {
  let q = '"';
  if (string.includes('"')) {
    q = string.includes("'") ? (string.includes("`") ? '"' : "`") : "'";
  }
  let out = "";
  for (const ch of string) {
    const code = ch.codePointAt(0);
    if (ch === q || ch === "\\") out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (ch === "\v") out += "\\v";
    else if (code < 0x20 || code === 0x7f) out += "\\x" + code.toString(16).padStart(2, "0");
    else out += ch;
  }
  return q + out + q;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function formatKey(key) {
  if (typeof key === "symbol") return `[${formatSymbol(key)}]`;
  return IDENTIFIER.test(key) ? key : quote(key);
}

function formatSymbol(symbol) {
  return symbol.toString();
}

function formatNumber(n) {
  return Object.is(n, -0) ? "-0" : String(n);
}

function formatPrimitive(value, nested) {
  switch (typeof value) {
    case "string": {
      if (!nested) return value;
      const shown = value.length > MAX_STRING_LENGTH ? value.slice(0, MAX_STRING_LENGTH) : value;
      const rest = value.length - shown.length;
      return quote(shown) + (rest > 0 ? `... ${rest} more character${rest > 1 ? "s" : ""}` : "");
    }
    case "number":
      return formatNumber(value);
    case "bigint":
      return `${value}n`;
    case "symbol":
      return formatSymbol(value);
    default:
      return String(value);
  }
}

function functionBase(fn) {
  let source = "";
  try {
    source = fnToString.call(fn);
  } catch {
    // Proxies of functions have no source.
  }
  const name = fn.name ? String(fn.name) : "";
  if (source.startsWith("class")) {
    const parent = Object.getPrototypeOf(fn);
    const extendsPart = parent && parent.name ? ` extends ${parent.name}` : "";
    return `[class ${name || "(anonymous)"}${extendsPart}]`;
  }
  const kind = tagOf(fn) === "AsyncFunction"
    ? "AsyncFunction"
    : tagOf(fn) === "GeneratorFunction"
    ? "GeneratorFunction"
    : tagOf(fn) === "AsyncGeneratorFunction"
    ? "AsyncGeneratorFunction"
    : "Function";
  return name ? `[${kind}: ${name}]` : `[${kind} (anonymous)]`;
}

function constructorName(value) {
  let proto = Object.getPrototypeOf(value);
  while (proto) {
    const descriptor = Object.getOwnPropertyDescriptor(proto, "constructor");
    if (descriptor && typeof descriptor.value === "function" && descriptor.value.name) {
      return descriptor.value.name;
    }
    proto = Object.getPrototypeOf(proto);
  }
  return null;
}

function isError(value) {
  return value instanceof Error || tagOf(value) === "Error";
}

function formatError(error) {
  let stack;
  try {
    stack = error.stack;
  } catch {
    // A throwing getter: fall back to name and message.
  }
  if (typeof stack !== "string" || stack === "") {
    stack = `${error.name ?? "Error"}: ${error.message ?? ""}`;
  }
  // QuickJS stacks lack the "Name: message" head that V8 puts first.
  const head = error.message ? `${error.name}: ${error.message}` : String(error.name ?? "Error");
  if (!stack.startsWith(head)) stack = `${head}\n${stack}`;
  if (error.cause !== undefined) {
    const cause = isError(error.cause) ? formatError(error.cause) : formatValue(error.cause, {
      seen: [],
      circular: new Map(),
      depth: DEFAULT_DEPTH,
      currentDepth: 0,
    }, 0, true);
    stack += `\nCaused by ${cause}`;
  }
  return stack.trimEnd();
}

function ownEntries(value, ctx, level, skipIndices) {
  const out = [];
  const keys = Reflect.ownKeys(value);
  for (const key of keys) {
    if (skipIndices && typeof key === "string" && /^(0|[1-9][0-9]*)$/.test(key)) continue;
    const descriptor = Reflect.getOwnPropertyDescriptor(value, key);
    if (!descriptor || !descriptor.enumerable) continue;
    let shown;
    if (descriptor.get || descriptor.set) {
      shown = descriptor.get && descriptor.set ? "[Getter/Setter]" : descriptor.get ? "[Getter]" : "[Setter]";
    } else {
      shown = formatValue(descriptor.value, ctx, level + 1, true);
    }
    out.push(`${formatKey(key)}: ${shown}`);
  }
  return out;
}

// Node's (and Deno's) `groupArrayElements`: more than six short array entries are laid
// out in aligned columns.
function groupArrayElements(output, level, values, extra) {
  const indentation = level * 2;
  const count = output.length - extra;
  let totalLength = 0;
  let maxLength = 0;
  const dataLen = [];
  for (let i = 0; i < count; i++) {
    const len = output[i].length;
    dataLen.push(len);
    totalLength += len + 2;
    if (maxLength < len) maxLength = len;
  }
  const actualMax = maxLength + 2;
  if (actualMax * 3 + indentation < BREAK_LENGTH && (totalLength / actualMax > 5 || maxLength <= 6)) {
    const averageBias = Math.sqrt(actualMax - totalLength / output.length);
    const biasedMax = Math.max(actualMax - 3 - averageBias, 1);
    const columns = Math.min(
      Math.round(Math.sqrt(2.5 * biasedMax * count) / biasedMax),
      Math.floor((BREAK_LENGTH - indentation) / actualMax),
      COMPACT * 4,
      15,
    );
    if (columns <= 1) return output;
    const maxLineLength = [];
    for (let i = 0; i < columns; i++) {
      let lineLength = 0;
      for (let j = i; j < count; j += columns) if (dataLen[j] > lineLength) lineLength = dataLen[j];
      maxLineLength.push(lineLength + 2);
    }
    const numeric = values !== undefined &&
      values.slice(0, count).every((v) => typeof v === "number" || typeof v === "bigint");
    const grouped = [];
    for (let i = 0; i < count; i += columns) {
      const max = Math.min(i + columns, count);
      let line = "";
      let j = i;
      for (; j < max - 1; j++) {
        const cell = `${output[j]}, `;
        line += numeric ? cell.padStart(maxLineLength[j - i]) : cell.padEnd(maxLineLength[j - i]);
      }
      line += numeric ? output[j].padStart(maxLineLength[j - i] - 2) : output[j];
      grouped.push(line);
    }
    for (let i = count; i < output.length; i++) grouped.push(output[i]);
    return grouped;
  }
  return output;
}

// Node's and Deno's `reduceToSingleString` with `compact: 3`: entries go on one line when
// they fit in 80 columns and at most three levels of objects lie below; else one per line.
function join(entries, open, close, prefix, ctx, level, values, extra = 0) {
  if (entries.length === 0) return `${prefix}${open}${close}`;
  let output = entries;
  if (values !== undefined && entries.length > 6) output = groupArrayElements(entries, level, values, extra);
  if (ctx.currentDepth - level < COMPACT && output.length === entries.length) {
    const start = output.length + level * 2 + prefix.length + open.length + 10;
    let total = output.length + start;
    const fits = total + output.length <= BREAK_LENGTH &&
      output.every((e) => (total += e.length) <= BREAK_LENGTH);
    if (fits && !output.some((e) => e.includes("\n"))) {
      return `${prefix}${open} ${output.join(", ")} ${close}`;
    }
  }
  const pad = "\n" + "  ".repeat(level + 1);
  return `${prefix}${open}${pad}${output.join("," + pad)}\n${"  ".repeat(level)}${close}`;
}

// Arrays with holes or extra properties are not grouped into columns.
function holesOrProps(array, shown, props) {
  if (props.length) return true;
  for (let i = 0; i < shown; i++) if (!Object.prototype.hasOwnProperty.call(array, i)) return true;
  return false;
}

function formatObject(value, ctx, level) {
  if (typeof value === "function") {
    const base = functionBase(value);
    const props = ownEntries(value, ctx, level, false).filter((e) => !e.startsWith("prototype:"));
    return props.length ? join(props, "{", "}", base + " ", ctx, level) : base;
  }
  if (isError(value)) return formatError(value);
  const tag = tagOf(value);
  if (tag === "Date") {
    return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
  }
  if (tag === "RegExp") return String(value);
  if (tag === "Boolean" || tag === "Number" || tag === "String" || tag === "Symbol" || tag === "BigInt") {
    const inner = formatPrimitive(value.valueOf(), true);
    return `[${tag}: ${inner}]`;
  }
  if (value instanceof Promise) {
    let inner = "<unknown>";
    if (getPromiseDetails) {
      try {
        const [state, result] = getPromiseDetails(value);
        inner = state === 0
          ? "<pending>"
          : state === 1
          ? formatValue(result, ctx, level + 1, true)
          : `<rejected> ${formatValue(result, ctx, level + 1, true)}`;
      } catch {
        // Not inspectable: leave it unknown.
      }
    }
    return `Promise { ${inner} }`;
  }
  if (tag === "WeakMap" || tag === "WeakSet" || tag === "WeakRef") return `${tag} { <items unknown> }`;
  if (level > ctx.depth) {
    if (Array.isArray(value)) return "[Array]";
    const name = constructorName(value);
    return `[${name ?? "Object"}]`;
  }

  ctx.currentDepth = level;
  const nameOf = constructorName(value);
  if (Array.isArray(value)) {
    const entries = [];
    let holes = 0;
    const shown = Math.min(value.length, MAX_ARRAY_ITEMS);
    for (let i = 0; i < shown; i++) {
      if (!Object.prototype.hasOwnProperty.call(value, i)) {
        holes++;
        continue;
      }
      if (holes) {
        entries.push(`<${holes} empty item${holes > 1 ? "s" : ""}>`);
        holes = 0;
      }
      entries.push(formatValue(value[i], ctx, level + 1, true));
    }
    if (holes) entries.push(`<${holes} empty item${holes > 1 ? "s" : ""}>`);
    if (value.length > shown) {
      const more = value.length - shown;
      entries.push(`... ${more} more item${more > 1 ? "s" : ""}`);
    }
    const extra = value.length > shown ? 1 : 0;
    const props = ownEntries(value, ctx, level, true).filter((e) => !e.startsWith("length:"));
    entries.push(...props);
    const prefix = nameOf && nameOf !== "Array" ? `${nameOf}(${value.length}) ` : "";
    return join(entries, "[", "]", prefix, ctx, level, holesOrProps(value, shown, props) ? undefined : value, extra);
  }
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    const items = Array.from(value.subarray(0, MAX_ARRAY_ITEMS), (n) => formatPrimitive(n, true));
    const extra = value.length > MAX_ARRAY_ITEMS ? 1 : 0;
    if (extra) items.push(`... ${value.length - MAX_ARRAY_ITEMS} more items`);
    return join(items, "[", "]", `${nameOf ?? tag}(${value.length}) `, ctx, level, Array.from(value.subarray(0, MAX_ARRAY_ITEMS)), extra);
  }
  if (tag === "ArrayBuffer" || tag === "SharedArrayBuffer") {
    const bytes = new Uint8Array(value, 0, Math.min(value.byteLength, 50));
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const more = value.byteLength > 50 ? ` ... ${value.byteLength - 50} more bytes` : "";
    return `${tag} { [Uint8Contents]: <${hex}${more}>, byteLength: ${value.byteLength} }`;
  }
  if (tag === "Map") {
    const entries = [];
    for (const [k, v] of value) {
      entries.push(`${formatValue(k, ctx, level + 1, true)} => ${formatValue(v, ctx, level + 1, true)}`);
    }
    return join(entries, "{", "}", `Map(${value.size}) `, ctx, level);
  }
  if (tag === "Set") {
    const entries = [];
    for (const v of value) entries.push(formatValue(v, ctx, level + 1, true));
    return join(entries, "{", "}", `Set(${value.size}) `, ctx, level);
  }
  const entries = ownEntries(value, ctx, level, false);
  let prefix = "";
  if (Object.getPrototypeOf(value) === null) prefix = "[Object: null prototype] ";
  else if (nameOf && nameOf !== "Object") prefix = `${nameOf} `;
  else if (tag !== "Object" && tag !== "Arguments") prefix = `Object [${tag}] `;
  else if (tag === "Arguments") prefix = "[Arguments] ";
  return join(entries, "{", "}", prefix, ctx, level);
}

function formatValue(value, ctx, level, nested) {
  if (value === null || (typeof value !== "object" && typeof value !== "function")) {
    return formatPrimitive(value, nested);
  }
  if (ctx.seen.includes(value)) {
    let index = ctx.circular.get(value);
    if (index === undefined) {
      index = ctx.circular.size + 1;
      ctx.circular.set(value, index);
    }
    return `[Circular *${index}]`;
  }
  ctx.seen.push(value);
  let out;
  try {
    out = formatObject(value, ctx, level);
  } catch (error) {
    out = `[object: ${error instanceof Error ? error.message : "uninspectable"}]`;
  } finally {
    ctx.seen.pop();
  }
  const index = ctx.circular.get(value);
  return index === undefined ? out : `<ref *${index}> ${out}`;
}

/** Formats one value as `Deno.inspect` does. */
function inspect(value, options = {}) {
  const ctx = {
    seen: [],
    circular: new Map(),
    depth: typeof options.depth === "number" ? options.depth : DEFAULT_DEPTH,
    currentDepth: 0,
  };
  return formatValue(value, ctx, 0, true);
}

/** Formats `console.log`'s arguments: `%s %d %i %f %o %O %c` in a leading string, then the rest. */
function formatArgs(args) {
  const parts = [];
  let rest = 0;
  if (typeof args[0] === "string" && args.length > 1 && args[0].includes("%")) {
    const format = args[0];
    let out = "";
    let next = 1;
    for (let i = 0; i < format.length; i++) {
      const ch = format[i];
      if (ch === "%" && i + 1 < format.length) {
        const spec = format[i + 1];
        if (spec === "%") {
          out += "%";
          i++;
          continue;
        }
        if ("sdifoOc".includes(spec) && next < args.length) {
          const arg = args[next++];
          i++;
          switch (spec) {
            case "s":
              out += typeof arg === "string" ? arg : inspectTop(arg, true);
              break;
            case "d":
            case "i": {
              const n = typeof arg === "bigint" ? arg : Number(arg);
              out += typeof n === "bigint" ? `${n}n` : formatNumber(spec === "i" ? Math.trunc(n) : n);
              break;
            }
            case "f":
              out += formatNumber(Number(arg));
              break;
            case "o":
            case "O":
              out += inspect(arg);
              break;
            case "c":
              break;
          }
          continue;
        }
      }
      out += ch;
    }
    parts.push(out);
    rest = next;
  }
  for (let i = rest; i < args.length; i++) parts.push(inspectTop(args[i], false));
  return parts.join(" ");
}

function inspectTop(value, _forString) {
  return typeof value === "string" ? value : inspect(value);
}
