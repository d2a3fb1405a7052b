// A complete CodeBeaker session from Node.js, on the SDK (@codebeaker/sdk).
//
//   (cd clients/typescript && npm install && npm run build)
//   node node_client.js [ws://127.0.0.1:5000/ws/jsonrpc] [deno|python]
//
// Creates a session, writes a program, runs it while its output streams in, reads the
// file the program wrote, and closes the session. Exits non-zero if any step fails.
import assert from 'node:assert';
import { Sandbox } from '../../clients/typescript/dist/index.js';

const url = process.argv[2] || 'ws://127.0.0.1:5000/ws/jsonrpc';
const language = process.argv[3] || 'deno';

// The program per language: it prints three lines, a moment apart, and writes a file.
const sources = {
  deno: ['count.ts', "for (let i = 1; i <= 3; i++) {\n  console.log(`tick ${i}`);\n" +
    "  await new Promise((r) => setTimeout(r, 200));\n}\nawait Deno.writeTextFile('done.txt', 'counted to 3');\n"],
  python: ['count.py', "import time\nfor i in range(1, 4):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.2)\n" +
    "open('done.txt', 'w').write('counted to 3')\n"],
};

const [path, source] = sources[language === 'deno' ? 'deno' : 'python'];
const chunks = [];
const onStdout = (data) => {
  chunks.push(data);
  console.log(`  [stdout] ${data.trimEnd()}`);
};

const sandbox = await Sandbox.create({ language, url });
try {
  console.log(`created ${language} session ${sandbox.sessionId} (${sandbox.backend})`);
  const written = await sandbox.files.write(path, source);
  console.log(`wrote ${written.path}`);
  if (language === 'deno') {
    const execution = await sandbox.runCode("await import('./count.ts');", { onStdout });
    assert.equal(execution.error, null, String(execution.error?.value));
  } else {
    await sandbox.commands.run(`python3 ${path}`, { onStdout });
  }
  assert.ok(chunks.join('').includes('tick 3'), `output should stream: ${chunks}`);
  const done = await sandbox.files.read('done.txt');
  assert.equal(done, 'counted to 3');
  console.log(`read done.txt: ${JSON.stringify(done)}`);
} finally {
  await sandbox.close();
}
console.log('closed');
