"""The MCP session cap as an agent sees it through the official MCP Python SDK (PyPI `mcp`):
with CAP (argv[2]) sessions open on /mcp (argv[1]) from this address, one more is refused
with JSON-RPC error -32002 naming the cap; once one session ends, a new one works.
Exits non-zero with a message on the first mismatch."""

import asyncio
import contextlib
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def errors_in(error):
    """The error and every error it groups or chains."""
    seen = [error]
    for inner in getattr(error, "exceptions", ()) or ():
        seen.extend(errors_in(inner))
    for inner in (error.__cause__, error.__context__):
        if inner is not None and inner not in seen:
            seen.extend(errors_in(inner))
    return seen


async def open_session(stack, url):
    client = await stack.enter_async_context(Client(streamable_http_client(url)))
    tools = await client.list_tools()
    if not tools.tools:
        fail("a session lists no tools")
    return client


async def refused(url):
    """The refusal of one more session, as the SDK reports it."""
    try:
        async with contextlib.AsyncExitStack() as stack:
            await asyncio.wait_for(open_session(stack, url), timeout=30)
    except asyncio.TimeoutError:
        fail("one session over the cap neither opened nor failed within 30 s")
    except BaseException as error:  # the SDK may wrap it in an exception group
        return errors_in(error)
    fail("one session over the cap was opened")


async def main(url, cap):
    async with contextlib.AsyncExitStack() as held:
        sessions = []
        for _ in range(cap):
            stack = contextlib.AsyncExitStack()
            await held.enter_async_context(stack)
            await open_session(stack, url)
            sessions.append(stack)
        errors = await refused(url)
        described = " | ".join(f"{type(e).__name__}: {getattr(e, 'error', e)!r}" for e in errors)
        codes = [getattr(getattr(e, "error", None), "code", None) for e in errors]
        if -32002 not in codes or "max-mcp-sessions-per-address" not in described:
            fail(f"the refusal does not say which cap: {described}")
        # Ending one session (the SDK sends DELETE) gives its place back. (The newest:
        # the SDK's task groups close in the order they were opened, last first.)
        await sessions[-1].aclose()
        for attempt in range(50):
            try:
                async with contextlib.AsyncExitStack() as stack:
                    await open_session(stack, url)
                break
            except BaseException:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
    print("OK: MCP session cap")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
