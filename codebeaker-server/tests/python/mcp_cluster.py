"""MCP tools on a cluster node (argv[1], its /mcp) acting on a session another node
holds (argv[2], a typescript session): run_code, write_file, read_file,
snapshot_session and close_session are forwarded to that node and answer as if it were
local."""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def text(result):
    return result.content[0].text


async def main(url, session):
    async with Client(streamable_http_client(url)) as mcp:
        ran = await mcp.call_tool("run_code", {"language": "typescript", "code": "console.log(6 * 7)", "session_id": session})
        if ran.is_error or "42" not in text(ran):
            fail(f"run_code on another node's session: {ran}")
        wrote = await mcp.call_tool("write_file", {"path": "from-mcp.txt", "content": "forwarded", "session_id": session})
        if wrote.is_error:
            fail(f"write_file: {wrote}")
        read = await mcp.call_tool("read_file", {"path": "from-mcp.txt", "session_id": session})
        if read.is_error or "forwarded" not in text(read):
            fail(f"read_file: {read}")
        snapshot = await mcp.call_tool("snapshot_session", {"session_id": session})
        if snapshot.is_error or not json.loads(text(snapshot)).get("snapshotId"):
            fail(f"snapshot_session: {snapshot}")
        closed = await mcp.call_tool("close_session", {"session_id": session})
        if closed.is_error or json.loads(text(closed)).get("closed") is not True:
            fail(f"close_session: {closed}")
    print("OK: MCP tools forwarded")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
