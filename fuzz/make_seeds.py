#!/usr/bin/env python3
"""Writes the committed seed corpus from protocol/testdata (run from fuzz/)."""
import json, pathlib

data = pathlib.Path(__file__).resolve().parent.parent / "protocol" / "testdata"
corpus = pathlib.Path(__file__).resolve().parent / "corpus"

def vectors(name):
    return json.loads((data / name).read_text())["vectors"]

def write(target, name, hexstr):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(bytes.fromhex(hexstr))

for i, v in enumerate(vectors("frames.json")):
    write("frame", f"frame-{i}", v["frame"])
for v in vectors("fail_frames.json"):
    write("frame", f"fail-{v['name']}", v["input"])
for i, v in enumerate(vectors("envelopes.json")[:2]):
    write("envelope", f"envelope-{i}", v["envelope"])
for v in vectors("fail_envelopes.json")[:6]:
    write("envelope", f"fail-{v['name']}", v["input"])
for v in vectors("requests.json"):
    write("command", f"request-{v['name']}", v["payload"])
for v in vectors("responses.json"):
    if v["name"] != "deliver":
        write("command", f"response-{v['name']}", v["payload"])
for v in vectors("fail_requests.json") + vectors("fail_responses.json"):
    write("command", f"fail-{v['name']}", v["input"])
