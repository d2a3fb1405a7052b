"""The seed guide's Python client, run against a live codebeaker-server.

Usage: python3 seed_client.py ws://127.0.0.1:PORT/ws/jsonrpc

Part 1 is the guide's example exactly as written, with only the URI changed. Part 2
goes on the way the guide's walkthrough does (write, run, read, list, close) on a
python session when the Docker backend answers, and always on a deno session (Deno is
always on). Any response of the wrong shape exits non-zero with the reason.
Needs `websockets` from PyPI (`pip install websockets`).
"""

import asyncio
import json
import sys

import websockets

URI = sys.argv[1] if len(sys.argv) > 1 else "ws://localhost:5000/ws/jsonrpc"


# --- Part 1: the guide's example, verbatim but for the URI --------------------------
async def codebeaker_client():
    uri = URI
    async with websockets.connect(uri) as ws:
        # 세션 생성
        request = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "session.create",
            "params": {"language": "python"}
        }
        await ws.send(json.dumps(request))
        response = await ws.recv()
        print(json.loads(response))
        return json.loads(response)


# --- Part 2: the walkthrough, checked --------------------------------------------
def check(condition, what, response):
    if not condition:
        print(f"FAILED: {what}: {json.dumps(response)}", file=sys.stderr)
        sys.exit(1)


async def call(ws, request_id, method, params):
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
    while True:
        response = json.loads(await ws.recv())
        if response.get("id") == request_id:
            check(response.get("jsonrpc") == "2.0", f"{method} answers JSON-RPC 2.0", response)
            return response
        check("method" in response, f"only notifications may come before the response to {method}", response)


async def envelope(ws, request_id, session_id, command):
    response = await call(ws, request_id, "session.execute", {"sessionId": session_id, "command": command})
    result = response.get("result")
    check(isinstance(result, dict), f"{command['type']} answers a result", response)
    guide = {"success", "result", "error", "durationMs"}
    extensions = {"usage", "outputs", "stateReset"}  # documented in docs/protocol.md
    check(guide <= set(result) <= guide | extensions, "the result envelope", response)
    check(result["success"] is True and result["error"] is None, f"{command['type']} succeeds", response)
    return result["result"]


async def walkthrough(language):
    async with websockets.connect(URI) as ws:
        created = await call(ws, 1, "session.create", {
            "language": language, "idleTimeoutMinutes": 30, "maxLifetimeMinutes": 120, "memoryLimitMB": 512})
        result = created.get("result") or {}
        for field in ("sessionId", "containerId", "language", "createdAt", "state", "config"):
            check(field in result, f"session.create result has {field}", created)
        check(result["state"] == "Active", "a new session is Active", created)
        session_id = result["sessionId"]

        if language == "python":
            written = await envelope(ws, 2, session_id, {
                "type": "write_file", "path": "/workspace/hello.py",
                "content": "print('Hello, World!')", "mode": "Create"})
            check(written == {"path": "/workspace/hello.py", "bytes": 22}, "write_file result", written)
            ran = await envelope(ws, 3, session_id, {
                "type": "execute_shell", "commandName": "python3",
                "args": ["/workspace/hello.py"], "workingDirectory": "/workspace"})
            check(ran["exitCode"] == 0 and ran["stdout"] == "Hello, World!\n", "python3 output", ran)
        else:
            ran = await envelope(ws, 3, session_id, {
                "type": "execute_code",
                "code": "const greeting: string = 'Hello from Deno!';\nconsole.log(greeting);"})
            check(ran == "Hello from Deno!", "execute_code output", ran)
            written = await envelope(ws, 2, session_id, {
                "type": "write_file", "path": "/workspace/hello.py", "content": "print('Hello, World!')"})

        read = await envelope(ws, 4, session_id, {"type": "read_file", "path": "/workspace/hello.py"})
        check(read == {"content": "print('Hello, World!')", "bytes": 22, "size": 22, "eof": True}, "read_file result", read)

        listed = await call(ws, 5, "session.list", {})
        sessions = listed["result"]["sessions"]
        check(any(s["sessionId"] == session_id for s in sessions), "session.list shows the session", listed)

        closed = await call(ws, 6, "session.close", {"sessionId": session_id})
        check(closed.get("result") == {"sessionId": session_id, "closed": True}, "session.close result", closed)
        print(f"{language} walkthrough: ok")


async def main():
    first = await codebeaker_client()
    check(first.get("jsonrpc") == "2.0" and first.get("id") == 1, "the guide's request is answered", first)
    languages = []
    if "result" in first:
        # Docker answered: close the guide's session, then walk through python.
        async with websockets.connect(URI) as ws:
            await call(ws, 7, "session.close", {"sessionId": first["result"]["sessionId"]})
        languages.append("python")
    else:
        check(first["error"]["code"] == -32003, "without Docker, python is 'backend unavailable'", first)
        print("python sessions need Docker, which is off: the walkthrough runs on deno only")
    languages.append("deno")
    for language in languages:
        await walkthrough(language)


asyncio.run(main())
