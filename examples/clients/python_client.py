"""A complete CodeBeaker session from Python, over WebSocket JSON-RPC 2.0.

    pip install websockets
    python3 python_client.py [ws://127.0.0.1:5000/ws/jsonrpc] [deno|python|javascript|go|csharp]

Creates a session, writes a program, runs it while its output streams in, reads the
file the program wrote, and closes the session. Exits non-zero if any step fails.
"""

import asyncio
import itertools
import json
import sys

import websockets

URL = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:5000/ws/jsonrpc"
LANGUAGE = sys.argv[2] if len(sys.argv) > 2 else "deno"

# The program to run per language: it prints three lines, a moment apart, and writes a file.
PROGRAMS = {
    "deno": ("count.ts", {"type": "execute_code", "code": "await import('./count.ts');"},
             "for (let i = 1; i <= 3; i++) {\n  console.log(`tick ${i}`);\n  await new Promise((r) => setTimeout(r, 200));\n}\n"
             "await Deno.writeTextFile('done.txt', 'counted to 3');\n"),
    "python": ("count.py", {"type": "execute_shell", "commandName": "python3", "args": ["count.py"]},
               "import time\nfor i in range(1, 4):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.2)\n"
               "open('done.txt', 'w').write('counted to 3')\n"),
}


class CodeBeakerClient:
    """Sends requests and matches responses by id; `session.output` notifications go to a callback."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method, params, on_output=None):
        request_id = next(self.ids)
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
        async for raw in self.ws:
            message = json.loads(raw)
            if message.get("method") == "session.output":
                if on_output:
                    on_output(message["params"])
            elif message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return message["result"]
        raise RuntimeError("the server closed the connection")

    async def execute(self, session_id, command, on_output=None, **extra):
        params = {"sessionId": session_id, "command": command, **extra}
        envelope = await self.call("session.execute", params, on_output=on_output)
        if not envelope["success"]:
            raise RuntimeError(f"{command['type']} failed: {envelope['error']}")
        return envelope["result"]


async def main():
    path, run, source = PROGRAMS.get(LANGUAGE, PROGRAMS["python"])
    async with websockets.connect(URL) as ws:
        client = CodeBeakerClient(ws)
        session = await client.call("session.create", {"language": LANGUAGE})
        session_id = session["sessionId"]
        print(f"created {LANGUAGE} session {session_id} (sandbox {session['containerId'][:12]})")

        written = await client.execute(session_id, {"type": "write_file", "path": path, "content": source})
        print(f"wrote {written['path']} ({written['bytes']} bytes)")

        chunks = []
        def show(output):
            chunks.append(output["data"])
            print(f"  [{output['stream']}] {output['data'].rstrip()}")
        await client.execute(session_id, run, on_output=show, stream=True)
        assert "tick 3" in "".join(chunks), f"output should stream: {chunks}"

        done = await client.execute(session_id, {"type": "read_file", "path": "done.txt"})
        assert done["content"] == "counted to 3", done
        print(f"read done.txt: {done['content']!r}")

        closed = await client.call("session.close", {"sessionId": session_id})
        assert closed == {"sessionId": session_id, "closed": True}, closed
        print("closed")


asyncio.run(main())
