// A complete CodeBeaker session from Node.js, over WebSocket JSON-RPC 2.0.
//
//   npm install            (installs `ws`)
//   node node_client.js [ws://127.0.0.1:5000/ws/jsonrpc] [deno|python]
//
// Creates a session, writes a program, runs it while its output streams in, reads the
// file the program wrote, and closes the session. Exits non-zero if any step fails.
'use strict';
const assert = require('node:assert');
const WebSocket = require('ws');

const url = process.argv[2] || 'ws://127.0.0.1:5000/ws/jsonrpc';
const language = process.argv[3] || 'deno';

const programs = {
  deno: {
    path: 'count.ts',
    run: { type: 'execute_code', code: "await import('./count.ts');" },
    source: "for (let i = 1; i <= 3; i++) {\n  console.log(`tick ${i}`);\n  await new Promise((r) => setTimeout(r, 200));\n}\n" +
      "await Deno.writeTextFile('done.txt', 'counted to 3');\n",
  },
  python: {
    path: 'count.py',
    run: { type: 'execute_shell', commandName: 'python3', args: ['count.py'] },
    source: "import time\nfor i in range(1, 4):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.2)\n" +
      "open('done.txt', 'w').write('counted to 3')\n",
  },
};

// Requests may be in flight at once: responses are matched by id, notifications by method.
class CodeBeakerClient {
  constructor(ws) {
    this.ws = ws;
    this.nextId = 1;
    this.pending = new Map();
    this.onOutput = () => {};
    ws.on('message', (raw) => {
      const message = JSON.parse(raw);
      if (message.method === 'session.output') return this.onOutput(message.params);
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.error) waiter.reject(new Error(`${waiter.method} failed: ${JSON.stringify(message.error)}`));
      else waiter.resolve(message.result);
    });
  }

  call(method, params) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  async execute(sessionId, command, extra = {}) {
    const envelope = await this.call('session.execute', { sessionId, command, ...extra });
    if (!envelope.success) throw new Error(`${command.type} failed: ${envelope.error}`);
    return envelope.result;
  }
}

async function main() {
  const program = programs[language] || programs.python;
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const client = new CodeBeakerClient(ws);

  const session = await client.call('session.create', { language });
  const sessionId = session.sessionId;
  console.log(`created ${language} session ${sessionId} (sandbox ${session.containerId.slice(0, 12)})`);

  const written = await client.execute(sessionId, { type: 'write_file', path: program.path, content: program.source });
  console.log(`wrote ${written.path} (${written.bytes} bytes)`);

  const chunks = [];
  client.onOutput = (output) => {
    chunks.push(output.data);
    console.log(`  [${output.stream}] ${output.data.trimEnd()}`);
  };
  await client.execute(sessionId, program.run, { stream: true });
  assert.ok(chunks.join('').includes('tick 3'), `output should stream: ${JSON.stringify(chunks)}`);

  const done = await client.execute(sessionId, { type: 'read_file', path: 'done.txt' });
  assert.strictEqual(done.content, 'counted to 3');
  console.log(`read done.txt: ${JSON.stringify(done.content)}`);

  const closed = await client.call('session.close', { sessionId });
  assert.deepStrictEqual(closed, { sessionId, closed: true });
  console.log('closed');
  ws.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
