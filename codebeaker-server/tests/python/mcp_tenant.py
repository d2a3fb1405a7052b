"""Tenant isolation over MCP: a tenant's token (argv[2]) on /mcp (argv[1]) cannot see,
use or close another tenant's session (argv[3]); the errors are the same as for an
unknown session."""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def text(result):
    return result.content[0].text


async def main(url, token, other):
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with Client(streamable_http_client(url, http_client=client)) as mcp:
        listed = json.loads(text(await mcp.call_tool("list_sessions", {})))
        if any(s["sessionId"] == other for s in listed["sessions"]):
            fail(f"another tenant's session is listed: {listed}")
        for tool, args in [
            ("run_code", {"language": "typescript", "code": "1", "session_id": other}),
            ("read_file", {"path": "x", "session_id": other}),
            ("close_session", {"session_id": other}),
        ]:
            result = await mcp.call_tool(tool, args)
            if not result.is_error or text(result) != f"Session not found: {other}":
                fail(f"{tool} on another tenant's session: {result}")
    print("OK: tenant isolation")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
