"""A small OTLP/HTTP trace receiver for the tests.

Decodes each `POST /v1/traces` with the official `opentelemetry-proto` package and prints
one JSON line per span on stdout (service, name, ids, attributes). The first line printed
is the port it listens on (127.0.0.1). `otlp_receiver.py [ok|503|hang]`: answer 200, answer
503 to every export, or never answer.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

MODE = sys.argv[1] if len(sys.argv) > 1 else "ok"
PRINTING = threading.Lock()


def plain(value):
    """An OTLP AnyValue as a plain Python value (scalars only; others as text)."""
    kind = value.WhichOneof("value")
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(value, kind)
    return str(value)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if MODE == "hang":
            time.sleep(3600)
            return
        if MODE == "503":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        request = ExportTraceServiceRequest.FromString(body)
        with PRINTING:
            for resource_spans in request.resource_spans:
                resource = {a.key: plain(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        line = {
                            "service": resource.get("service.name"),
                            "name": span.name,
                            "traceId": span.trace_id.hex(),
                            "spanId": span.span_id.hex(),
                            "parentSpanId": span.parent_span_id.hex(),
                            "attributes": {a.key: plain(a.value) for a in span.attributes},
                        }
                        print(json.dumps(line), flush=True)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
