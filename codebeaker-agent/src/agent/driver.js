// The persistent Node interpreter's driver, embedded in the agent and run with
// `node -e`. Requests arrive as JSON lines on fd 3, answers leave as JSON lines on fd 4;
// fds 1 and 2 are the agent's output pipes (synchronous for pipes on Linux). After each
// run a marker is written to fds 1 and 2 so the agent knows all output has been read.
'use strict';
const fs = require('fs');
const net = require('net');
const util = require('util');
const vm = require('vm');
const path = require('path');
const { Module } = require('module');

const cwd = process.cwd();
const userRequire = Module.createRequire(path.join(cwd, '<cell>'));
const sandbox = {
  console, process, Buffer, URL, URLSearchParams, TextEncoder, TextDecoder,
  setTimeout, clearTimeout, setInterval, clearInterval, setImmediate, clearImmediate,
  queueMicrotask, structuredClone, require: userRequire, module: { exports: {} },
  __dirname: cwd, __filename: path.join(cwd, '<cell>'),
};
sandbox.exports = sandbox.module.exports;
sandbox.globalThis = sandbox;
const context = vm.createContext(sandbox);
let running = false;
let interrupted = null;

// SIGINT interrupts running code (vm's breakOnSigint) and never kills the driver.
process.on('SIGINT', () => {
  if (running && interrupted) interrupted();
});

// Errors made in the context come from another realm: no `instanceof` checks here.
function userStack(error, name, value) {
  const header = value ? `${name}: ${value}` : name;
  if (error === null || typeof error !== 'object' || typeof error.stack !== 'string') return header + '\n';
  const lines = error.stack.split('\n');
  // A syntax error's stack starts with the location and the offending source line.
  const headerAt = lines.findIndex((line) => line.startsWith(name));
  const location = name === 'SyntaxError' && headerAt > 0 ? lines.slice(0, headerAt).filter((l) => l !== '') : [];
  const frames = lines.filter((line) => line.trimStart().startsWith('at ') && line.includes('<cell-'));
  return location.concat([header], frames).join('\n') + '\n';
}

function errorOf(error) {
  const isObject = error !== null && typeof error === 'object';
  const name = (isObject && typeof error.name === 'string' && error.name) || 'Error';
  const value = isObject && error.message !== undefined ? String(error.message) : String(error);
  return { name, value, traceback: userStack(error, name, value) };
}

// Top-level `await` (a syntax error in a script) runs the cell as an async function: an
// expression's value is kept; declarations inside stay local to that cell.
function compile(code, filename) {
  try {
    return new vm.Script(code, { filename });
  } catch (error) {
    if (!(error && error.name === 'SyntaxError' && /await is only valid/.test(error.message))) throw error;
    try {
      return new vm.Script(`(async () => (\n${code}\n))()`, { filename, lineOffset: -1 });
    } catch (_) {
      return new vm.Script(`(async () => {\n${code}\n})()`, { filename, lineOffset: -1 });
    }
  }
}

async function run(number, code) {
  const answer = { error: null, result: null, outputs: [] };
  running = true;
  try {
    const script = compile(code, `<cell-${number}>`);
    let value = script.runInContext(context, { breakOnSigint: true, displayErrors: false });
    if (value && typeof value.then === 'function') {
      value = await Promise.race([
        value,
        new Promise((_, reject) => { interrupted = () => reject(new Error('Script execution was interrupted by `SIGINT`')); }),
      ]);
    }
    if (value !== undefined) {
      sandbox._ = value;
      const text = typeof value === 'string' ? util.inspect(value) : util.inspect(value, { depth: 4 });
      answer.result = text;
      fs.writeSync(1, text + '\n');
    }
  } catch (error) {
    const described = errorOf(error);
    if (/interrupted by `SIGINT`/.test(described.value)) {
      described.name = 'KeyboardInterrupt';
    }
    fs.writeSync(2, described.traceback);
    answer.error = described;
  } finally {
    running = false;
    interrupted = null;
  }
  return answer;
}

let buffered = '';
let number = 0;
let queue = Promise.resolve();
// A socket on the pipe is event-driven (a read stream would poll it from the thread pool).
const requests = new net.Socket({ fd: 3, readable: true, writable: false });
requests.on('data', (chunk) => {
  buffered += chunk.toString('utf8');
  let newline;
  while ((newline = buffered.indexOf('\n')) >= 0) {
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    let request;
    try { request = JSON.parse(line); } catch (_) { continue; }
    number += 1;
    const current = number;
    queue = queue.then(async () => {
      const answer = await run(current, request.code);
      fs.writeSync(1, request.marker);
      fs.writeSync(2, request.marker);
      answer.id = request.id;
      fs.writeSync(4, JSON.stringify(answer) + '\n');
    });
  }
});
requests.on('end', () => process.exit(0));
