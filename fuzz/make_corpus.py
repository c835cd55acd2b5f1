#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (fuzz/corpus/TARGET/) from the repository's templates
and examples and from the shapes the tests send. Run from the repository's root:
python3 fuzz/make_corpus.py. The files are committed; libFuzzer adds its own beside them
when run locally (those are not committed: see .gitignore)."""
import glob
import hashlib
import json
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


templates = sorted(
    glob.glob(os.path.join(ROOT, "analysis-templates", "*.yaml"))
    + glob.glob(os.path.join(ROOT, "deploy", "examples", "*", "analysis-template.yaml"))
)
queries = []
for path in templates:
    text = open(path).read()
    write("template", text)
    # Each query of the template, one line, with its arguments' defaults, for the renderer.
    args = dict(re.findall(r"- name: (\w+)\n(?:\s+description: .*\n)?\s+default: \"?([^\"\n]*)\"?", text))
    for q in re.findall(r"(?:query|errors|total): >-\n\s+(.+)", text) + re.findall(
        r"(?:query|errors|total): (sum.+|histogram.+|avg.+|rate.+)", text
    ):
        queries.append(q.strip())
        lines = [q.strip()] + [f"{k}={v}" for k, v in args.items()]
        write("render", "\n".join(lines))

# Arguments that try to leave their strings, and placeholders in odd places.
write("render", 'sum(rate(x{job="{{ args.job }}", {{ selector }}}[{{ interval }}]))\njob=a", evil="1')
write("render", "sum(x{job='{{ args.job }}', {{ selector }}})\njob=a', evil='1")
write("render", "sum(x{job=`{{ args.job }}`, {{ selector }}})\njob=a`b")
write("render", "sum(x{ {{ selector }} }) by ({{ args.by }})\nby=le")
write("render", '# {{ selector }} in a comment\nsum(x{ {{ selector }} })')
write("render", 'label_replace(x{ {{ selector }} }, "a", "{{ args.v }}", "", "")\nv=\\\\"')

for s in [
    'version="v1"',
    'app="web", pod=~"web-canary-.*"',
    'version!="v1",track!~"canary|preview"',
    "a='b'",
    'a="\\"quoted\\" \\\\ \\n"',
    'app="web",',
    'app = "web" , version = "v2"',
    "__name__=\"up\"",
]:
    write("selector", s)

for s in ["1m", "1h30m", "90s", "500ms", "1w", "2y", "1d12h", "10%", "0.1", "0", "12.5%", "1e-3", "100%"]:
    write("units", s)


def answer(status, body):
    return struct.pack("<H", status) + json.dumps(body).encode()


write("prometheus_answer", answer(200, {"status": "success", "data": {"resultType": "matrix", "result": [
    {"metric": {"version": "v1"}, "values": [[1790000000, "1"], [1790000060, "NaN"], [1790000120.5, "+Inf"]]}]}}))
write("prometheus_answer", answer(200, {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {}, "value": [1790000000, "0.25"]}]}, "warnings": ["PromQL info: metric might not be a counter"]}))
write("prometheus_answer", answer(200, {"status": "success", "data": {"resultType": "scalar", "result": [1790000000, "-Inf"]}}))
write("prometheus_answer", answer(400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}))
write("prometheus_answer", answer(503, {"status": "error", "errorType": "timeout", "error": "query timed out"}))
write("prometheus_answer", struct.pack("<H", 502) + b"<html>Bad Gateway</html>")

inline = {
    "apiVersion": "vigil.dev/v1alpha1", "kind": "ReleaseAnalysis", "metadata": {"name": "t"},
    "spec": {"metrics": [{"name": "errors", "type": "ratio",
                          "errors": "sum(increase(e{ {{ selector }} }[{{ interval }}]))",
                          "total": "sum(increase(t{ {{ selector }} }[{{ interval }}]))",
                          "tolerance": "20%"}]},
}
judge = [
    {"template": "t", "namespace": "shop", "stable": 'v="1"', "canary": 'v="2"', "lookback": "30m"},
    {"template": inline, "stable": 'v="1"', "canary": 'v="2"', "start": "2026-09-21T13:00:00Z",
     "end": "1790000000", "step": "30s"},
    {"template": inline, "stable": 'v="1"', "canary": 'v="1"', "lookback": "10m",
     "baselineBefore": "2026-09-21T13:00:00Z"},
]
flagger = [
    {"name": "web", "namespace": "shop", "phase": "Progressing", "checksum": "abc",
     "metadata": {"template": "http", "stable": 'version="v1"', "canary": 'version="v2"',
                  "arg.job": "web", "step": "30s"}},
]
labels = {"alertname": "HighErrorRate", "namespace": "shop", "release": "web"}
alert = {
    "version": "4", "groupKey": '{}:{alertname="HighErrorRate"}', "truncatedAlerts": 0,
    "status": "firing", "receiver": "vigil", "groupLabels": {"alertname": "HighErrorRate"},
    "commonLabels": labels, "commonAnnotations": {"summary": "5xx above 5%"},
    "externalURL": "http://alertmanager.example:9093",
    "alerts": [{"status": "firing", "labels": labels, "annotations": {"summary": "5xx above 5%"},
                "startsAt": "2026-09-21T13:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example/graph", "fingerprint": "1a30ba71cca2921f"}],
}
# The endpoint indices of fuzz_targets/api_bodies.rs.
for body in judge:
    write("api_bodies", bytes([0]) + json.dumps(body).encode())
    write("api_bodies", bytes([4]) + json.dumps(body).encode())
for body in flagger:
    for i in (1, 2, 5):
        write("api_bodies", bytes([i]) + json.dumps(body).encode())
write("api_bodies", bytes([6]) + json.dumps(alert).encode())
write("api_bodies", bytes([3]) + json.dumps({"full": True}).encode())
write("api_bodies", bytes([3]))
write("api_bodies", bytes([7]) + json.dumps({"reason": "pager"}).encode())
