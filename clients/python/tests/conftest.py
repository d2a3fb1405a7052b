"""Every message the SDK exchanges with the live server in these tests is checked
against the protocol's JSON Schema (``docs/schema/``, generated from the server's
types): what the SDK sends against each method's params, what it receives against the
result, the error object or the notification's params. A test whose traffic strays
from the schema fails, naming the message."""

import json
from pathlib import Path

import jsonschema
import pytest

from codebeaker import _connection

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "docs" / "schema"
INDEX = json.loads((SCHEMA_DIR / "index.json").read_text())


def _validator(name):
    schema = json.loads((SCHEMA_DIR / name).read_text())
    return jsonschema.Draft202012Validator(schema)


VALIDATORS = {}


def check(kind, method, document, value, strays):
    """Validates ``value`` against ``document`` (a file of the index), noting a stray."""
    if document is None:
        strays.append(f"{kind} of {method}: no schema in docs/schema/index.json")
        return
    validator = VALIDATORS.get(document) or VALIDATORS.setdefault(document, _validator(document))
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    if errors:
        strays.append(f"{kind} of {method} does not match {document}: {errors[0].message} in {json.dumps(value)[:400]}")


@pytest.fixture(autouse=True)
def messages_match_the_schema(monkeypatch):
    strays = []
    methods, notifications = INDEX["methods"], INDEX["notifications"]
    original_call = _connection.Connection.call
    original_dispatch = _connection.Connection._dispatch

    async def call(self, method, params, stream=None, timeout=None):
        check("params", method, methods.get(method, {}).get("params"), params, strays)
        result = await original_call(self, method, params, stream, timeout)
        check("result", method, methods.get(method, {}).get("result"), result, strays)
        return result

    def dispatch(self, message):
        if "error" in message and "id" in message:
            check("error", "a request", INDEX["error"], message["error"], strays)
        elif "method" in message and "id" not in message:
            method = message["method"]
            check("params", method, notifications.get(method, {}).get("params"), message.get("params", {}), strays)
        return original_dispatch(self, message)

    monkeypatch.setattr(_connection.Connection, "call", call)
    monkeypatch.setattr(_connection.Connection, "_dispatch", dispatch)
    yield
    assert not strays, "messages that stray from docs/schema:\n" + "\n".join(strays)
