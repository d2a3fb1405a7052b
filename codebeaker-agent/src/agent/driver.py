# The persistent Python interpreter's driver, embedded in the agent and run with
# `python3 -u -c`. Requests arrive as JSON lines on fd 3, answers leave as JSON lines on
# fd 4; fds 1 and 2 are the agent's output pipes, so output of C extensions and
# subprocesses is captured like print(). After each run a marker line is written to
# fds 1 and 2 so the agent knows all output of the run has been read.
import ast
import base64
import io
import json
import linecache
import os
import signal
import sys
import traceback

_requests = os.fdopen(3, "rb", buffering=0)
_answers = os.fdopen(4, "wb", buffering=0)
# Programs the user's code starts do not get the driver's channel.
os.set_inheritable(3, False)
os.set_inheritable(4, False)
_namespace = {"__name__": "__main__", "__builtins__": __builtins__}
# A copy made by the user's os.fork() that returns into the driver ends there: it must not
# answer for the run or read the next request (a fork bomb's copies would otherwise take
# the session's requests).
_DRIVER_PID = os.getpid()


def _leave_if_forked():
    if os.getpid() != _DRIVER_PID:
        os._exit(0)

_running = False


def _interrupt(signum, frame):
    # Only user code is interrupted; between runs a late SIGINT is ignored.
    if _running:
        raise KeyboardInterrupt


signal.signal(signal.SIGINT, _interrupt)


def _user_traceback(exc):
    # The driver's frames, and what ran before the user's first frame (compiling the
    # cell), are not the user's business.
    shown = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    frames = list(shown.stack)
    while frames and not frames[0].filename.startswith("<cell-"):
        frames.pop(0)
    shown.stack = traceback.StackSummary.from_list([f for f in frames if f.filename != _DRIVER_FILE])
    return "".join(shown.format())


_DRIVER_FILE = _user_traceback.__code__.co_filename


def _rich(value):
    outputs = []
    for method, mime in (("_repr_png_", "image/png"), ("_repr_svg_", "image/svg+xml"), ("_repr_html_", "text/html")):
        render = getattr(value, method, None)
        if render is None or isinstance(value, type):
            continue
        try:
            data = render()
        except Exception:
            continue
        if data is None:
            continue
        if isinstance(data, bytes):
            data = base64.b64encode(data).decode("ascii") if mime == "image/png" else data.decode("utf-8", "replace")
        outputs.append({"mime": mime, "data": str(data)})
    return outputs


def _figures():
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    outputs = []
    try:
        for number in pyplot.get_fignums():
            buffer = io.BytesIO()
            pyplot.figure(number).savefig(buffer, format="png")
            outputs.append({"mime": "image/png", "data": base64.b64encode(buffer.getvalue()).decode("ascii")})
        pyplot.close("all")
    except Exception as exc:  # a broken figure must not break the session
        sys.stderr.write(f"could not render figures: {exc}\n")
    return outputs


_TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
_loop = None


def _evaluate(compiled):
    # Code with a top-level `await` compiles to a coroutine: run it on one loop that
    # lives as long as the session, like a notebook's.
    global _loop
    result = eval(compiled, _namespace)
    if compiled.co_flags & 0x80:  # CO_COROUTINE
        import asyncio
        if _loop is None:
            _loop = asyncio.new_event_loop()
        result = _loop.run_until_complete(result)
    return result


def _run(number, code):
    global _running
    filename = f"<cell-{number}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    answer = {"error": None, "result": None, "outputs": []}
    value = None
    try:
        _running = True
        tree = ast.parse(code, filename, "exec")
        trailing = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            trailing = ast.Expression(tree.body.pop().value)
        _evaluate(compile(tree, filename, "exec", flags=_TOP_LEVEL_AWAIT))
        if trailing is not None:
            value = _evaluate(compile(trailing, filename, "eval", flags=_TOP_LEVEL_AWAIT))
        _running = False
        _leave_if_forked()
        if value is not None:
            _namespace["_"] = value
            text = repr(value)
            answer["result"] = text
            print(text)
            answer["outputs"].extend(_rich(value))
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are the user's too
        _running = False
        _leave_if_forked()
        text = _user_traceback(exc)
        sys.stderr.write(text)
        answer["error"] = {"name": type(exc).__name__, "value": str(exc), "traceback": text}
    finally:
        _running = False
    answer["outputs"].extend(_figures())
    return answer


def _main():
    number = 0
    for line in _requests:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        number += 1
        try:
            answer = _run(number, request["code"])
        except KeyboardInterrupt:
            answer = {"error": {"name": "KeyboardInterrupt", "value": "", "traceback": "KeyboardInterrupt\n"}}
        _leave_if_forked()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        marker = request["marker"].encode()
        os.write(1, marker)
        os.write(2, marker)
        answer["id"] = request["id"]
        _answers.write(json.dumps(answer).encode() + b"\n")


while True:
    try:
        _main()
        break
    except KeyboardInterrupt:
        _leave_if_forked()
        continue
    except BaseException:
        _leave_if_forked()
        raise
