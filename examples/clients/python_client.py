"""A complete CodeBeaker session from Python, on the SDK (the `codebeaker` package).

    pip install ./clients/python
    python3 python_client.py [ws://127.0.0.1:5000/ws/jsonrpc] [deno|python]

Creates a session, writes a program, runs it while its output streams in, reads the
file the program wrote, and closes the session. Exits non-zero if any step fails.
"""

import sys

from codebeaker import Sandbox

URL = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:5000/ws/jsonrpc"
LANGUAGE = sys.argv[2] if len(sys.argv) > 2 else "deno"

# The program per language: it prints three lines, a moment apart, and writes a file.
SOURCES = {
    "deno": ("count.ts", "for (let i = 1; i <= 3; i++) {\n  console.log(`tick ${i}`);\n"
             "  await new Promise((r) => setTimeout(r, 200));\n}\nawait Deno.writeTextFile('done.txt', 'counted to 3');\n"),
    "python": ("count.py", "import time\nfor i in range(1, 4):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.2)\n"
               "open('done.txt', 'w').write('counted to 3')\n"),
}

path, source = SOURCES["deno" if LANGUAGE == "deno" else "python"]
chunks = []


def show(data):
    chunks.append(data)
    print(f"  [stdout] {data.rstrip()}")


with Sandbox.create(language=LANGUAGE, url=URL) as sandbox:
    print(f"created {LANGUAGE} session {sandbox.session_id} ({sandbox.backend})")
    written = sandbox.files.write(path, source)
    print(f"wrote {written.path}")
    if LANGUAGE == "deno":
        execution = sandbox.run_code("await import('./count.ts');", on_stdout=show)
        assert execution.error is None, execution.error
    else:
        sandbox.commands.run(f"python3 {path}", on_stdout=show)
    assert "tick 3" in "".join(chunks), f"output should stream: {chunks}"
    done = sandbox.files.read("done.txt")
    assert done == "counted to 3", done
    print(f"read done.txt: {done!r}")
print("closed")
