"""One MCP tool call (run_code on Deno) over streamable HTTP (argv[1], the /mcp URL),
every HTTP request carrying the W3C traceparent argv[2]."""

import asyncio
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url, traceparent):
    client = create_mcp_http_client(headers={"traceparent": traceparent})
    async with Client(streamable_http_client(url, http_client=client)) as mcp:
        ran = await mcp.call_tool("run_code", {"language": "typescript", "code": "console.log(6 * 7)"})
        if ran.is_error or not any("42" in c.text for c in ran.content):
            print(f"FAIL: run_code: {ran}", file=sys.stderr)
            sys.exit(1)
    print("OK: traced tool call")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
