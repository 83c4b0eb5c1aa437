#!/usr/bin/env python3
"""Writes the committed seed corpus from protocol/testdata (run from fuzz/)."""
import json, pathlib

data = pathlib.Path(__file__).resolve().parent.parent / "protocol" / "testdata"
corpus = pathlib.Path(__file__).resolve().parent / "corpus"

def vectors(name, where=data):
    return json.loads((where / name).read_text())["vectors"]

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
# group: the first byte picks the decoder (see fuzz_targets/group.rs).
modes = {"op": 0, "group_text": 2, "introduction": 4, "op_v2": 7}
def prefixed(ops):
    return b"".join(len(bytes.fromhex(o)).to_bytes(2, "big") + bytes.fromhex(o) for o in ops)
for v in vectors("group.json"):
    if v["kind"] == "fold":
        write("group", v["name"], "06" + prefixed(v["ops"]).hex())
    elif v["kind"] == "fold_v2":
        write("group", v["name"], "09" + prefixed(v["ops"]).hex())
    else:
        write("group", v["name"], "%02x" % modes[v["kind"]] + v["encoding"])
        if v["kind"] == "op":
            write("group", v["name"] + "-stored", "01" + v["encoding"])
        if v["kind"] == "op_v2":
            write("group", v["name"] + "-stored", "08" + v["encoding"])
for v in vectors("fail_group.json"):
    if v["kind"] in ("admission_v2", "fold_v2"):
        write("group", "fail-" + v["name"], "09" + prefixed(v["ops"] + [v["op"]]).hex())
    else:
        write("group", "fail-" + v["name"], "%02x" % modes[v["kind"]] + v["input"])
# Interactions (three bytes a step: who, what, arg): the creator invites
# 1 and 2, they join, 1 is made admin and invites 3, then is removed while
# it signs a backdated removal of the creator; deliveries in between.
write("group", "interaction-backdating", "0a" + "".join([
    "000001", "000002", "010600", "020600", "010300", "020300", "000600",
    "000201", "010600", "010003", "000101", "010181", "020600", "030600",
]))
write("group", "interaction-roles", "0a" + "".join([
    "000001", "010600", "010300", "000600", "000200", "010002", "020600",
    "020300", "010102", "020400", "000502", "030600",
]))
# Compact folds: create, adds, a remove and a re-add, concurrent clocks.
write("group", "compact-fold", "05" + "00000000" "00010101" "01020102" "00030203" "01030102" "02040101")
write("group", "text-part", "03" + next(v for v in vectors("group.json") if v["name"] == "group-text")["encoding"][96:])
