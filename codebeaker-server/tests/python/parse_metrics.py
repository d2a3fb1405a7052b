"""Parses an OpenMetrics exposition (the body of CodeBeaker's GET /metrics) from stdin with
the official Prometheus client's parser (PyPI `prometheus-client`), and prints every sample
as one JSON object per line: {"name", "labels", "value", "type"}. A body the parser
refuses makes this exit non-zero with the parser's message.
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                print(json.dumps({"name": sample.name, "labels": sample.labels, "value": sample.value, "type": family.type}))
    except Exception as error:  # the parser's own error says what is wrong
        print(f"FAIL: not valid OpenMetrics: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
