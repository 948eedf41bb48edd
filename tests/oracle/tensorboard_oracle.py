"""TensorBoard oracle: the run folder cemoe's metrics writers make (trainer/metrics/, driven by
metrics_write) read back by TensorBoard's own readers.

usage: tensorboard_oracle.py --metrics-write BUILD/tests/oracle/metrics_write --work DIR [--only CASE[,CASE]]

metrics_write writes RUN_DIR from a fixed sequence of steps: a fresh run of steps 1..8, a crash
imitated by torn writes at the end of metrics.jsonl and of the event file, a resume from step 5
(steps 6..12 redone with other values; step 7 skipped: NaN loss, infinite grad_norm), a resume
from step 12 (steps 13..15). z_loss holds the phase (1, 2, 3) that wrote each step. Cases:
    resume_reports    what metrics_write reported on opening each phase: 3 lines (6, 7, 8) and the
                      torn line dropped from metrics.jsonl, 3 events and the torn record from the
                      first event file; nothing at the second resume.
    jsonl             metrics.jsonl: strict JSON per line (no bare NaN/Infinity tokens), steps 1..15
                      once each in order, each step from the phase that wrote it last.
    record_reader     every event file through TensorBoard's CRC-checking record reader
                      (tensorflow_stub PyRecordReader_New): no DataLossError, every record a
                      tensorboard.Event with no unknown fields, the first one file_version
                      "brain.Event:2", the others a summary of simple_values.
    event_accumulator EventAccumulator (what `tensorboard --logdir RUN_DIR` uses without the Rust data
                      server) on RUN_DIR: the tags of docs/metrics.md, for each tag the steps 1..15
                      once, and each value equal as float32 to metrics.jsonl's (train/<key>; for
                      expert_load/layer_<l>/{max,min} exactly, /cv within 2e-7 relative since the
                      population standard deviation is summed in another order here); no warning
                      or error logged by TensorBoard.
    tensorboard_server `tensorboard --logdir RUN_DIR --load_fast=true` itself (the Rust data server),
                      on 127.0.0.1 with a port the system picks: its HTTP API lists the one run ".",
                      the same tags, and for each tag steps 1..15 with values equal as float32 to
                      what EventAccumulator read. Polled for at most 90 s; the server is stopped.
"""
import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
from google.protobuf import unknown_fields
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New

import oracle_common as oc

TRAIN_KEYS = ["loss", "aux_loss", "z_loss", "lr", "grad_norm", "tokens", "tokens_per_s", "skipped"]
STEPS = list(range(1, 16))
PHASE_OF_STEP = {s: 1 if s <= 5 else 2 if s <= 12 else 3 for s in STEPS}


def as_float(v):
    """metrics.jsonl's value as a Python float ("NaN", "Infinity", "-Infinity" are strings there)."""
    if isinstance(v, str):
        if v not in ("NaN", "Infinity", "-Infinity"):
            oc.fail(f"unexpected string value {v!r} in metrics.jsonl")
        return float(v)
    return float(v)


def same_f32(got, want):
    w = np.float32(want)
    g = np.float32(got)
    return (math.isnan(w) and math.isnan(g)) or g == w


def strict_loads(line):
    def no_constant(name):
        raise ValueError(f"bare {name} is not JSON")
    return json.loads(line, parse_constant=no_constant)


def read_jsonl(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        text = f.read()
    if not text.endswith("\n"):
        oc.fail("metrics.jsonl does not end with a newline")
    return [strict_loads(line) for line in text.splitlines()]


def event_files(run_dir):
    return sorted(os.path.join(run_dir, n) for n in os.listdir(run_dir) if "tfevents" in n)


def expected_scalars(rows):
    """{tag: [(step, value as float64)]} from metrics.jsonl, as docs/metrics.md defines the tags."""
    out = {}
    for r in rows:
        for k in TRAIN_KEYS:
            out.setdefault(f"train/{k}", []).append((r["step"], as_float(r[k])))
        load = r["expert_load"]
        width = len(str(max(len(load) - 1, 0)))
        for layer, fractions in enumerate(load):
            if not fractions:
                continue
            x = np.array([as_float(v) for v in fractions], dtype=np.float64)
            mean = x.mean()
            cv = 0.0 if mean == 0 else float(x.std() / mean)
            prefix = f"expert_load/layer_{layer:0{width}d}/"
            out.setdefault(prefix + "max", []).append((r["step"], float(x.max())))
            out.setdefault(prefix + "min", []).append((r["step"], float(x.min())))
            out.setdefault(prefix + "cv", []).append((r["step"], cv))
    return out


def case_resume_reports(reports):
    def check(cond, what):
        if not cond:
            oc.fail(f"{what}; reports: {json.dumps(reports)}")
    check(len(reports) == 3, "expected 3 phase reports")
    p1, p2, p3 = reports
    check(p1["metrics"]["dropped_lines"] == 0 and p1["events"]["events_dropped"] == 0, "fresh run dropped")
    check(p2["metrics"]["kept_lines"] == 5 and p2["metrics"]["dropped_lines"] == 3, "resume 5: lines")
    check(p2["metrics"]["torn_bytes"] == 40 and p2["metrics"]["rewritten"], "resume 5: torn line")
    check(p2["events"]["events_dropped"] == 3 and p2["events"]["files_rewritten"] == 1, "resume 5: events")
    check(len(p2["events"]["problems"]) == 1 and "torn" in p2["events"]["problems"][0], "resume 5: torn record")
    check(p3["metrics"]["dropped_lines"] == 0 and not p3["metrics"]["rewritten"], "resume 12: lines")
    check(p3["events"]["files_kept"] == 2 and p3["events"]["events_dropped"] == 0, "resume 12: events")
    return {"reports": 3}


def case_jsonl(run_dir):
    rows = read_jsonl(run_dir)
    steps = [r["step"] for r in rows]
    if steps != STEPS:
        oc.fail(f"metrics.jsonl steps {steps}, want {STEPS}")
    wrong = [r["step"] for r in rows if r["z_loss"] != PHASE_OF_STEP[r["step"]]]
    if wrong:
        oc.fail(f"metrics.jsonl steps {wrong} come from the wrong phase")
    r7 = rows[6]
    if not (r7["loss"] == "NaN" and r7["grad_norm"] == "Infinity" and r7["skipped"] == 1):
        oc.fail(f"step 7 should be the skipped step: {r7}")
    for r in rows:
        for layer in r["expert_load"]:
            if abs(sum(layer) - 1.0) > 1e-12:
                oc.fail(f"step {r['step']}: expert load {layer} does not sum to 1")
    return rows


def case_record_reader(report, run_dir):
    files = event_files(run_dir)
    if len(files) != 3:
        oc.fail(f"expected 3 event files (one per phase), found {files}")
    total = 0
    for path in files:
        reader = PyRecordReader_New(path)
        events = []
        while True:
            try:
                reader.GetNext()
            except errors.OutOfRangeError:
                break
            except errors.DataLossError as e:
                oc.fail(f"{path}: DataLossError after {len(events)} records: {e}")
            e = event_pb2.Event()
            e.ParseFromString(reader.record())
            if len(unknown_fields.UnknownFieldSet(e)) != 0:
                oc.fail(f"{path}: record {len(events)} has fields tensorboard.Event does not know")
            events.append(e)
        if not events or events[0].file_version != "brain.Event:2":
            oc.fail(f"{path}: first event is not file_version brain.Event:2: {events[:1]}")
        for e in events[1:]:
            if e.WhichOneof("what") != "summary" or not e.summary.value:
                oc.fail(f"{path}: event at step {e.step} is not a summary: {e}")
            for v in e.summary.value:
                if v.WhichOneof("value") != "simple_value" or len(unknown_fields.UnknownFieldSet(v)):
                    oc.fail(f"{path}: value {v.tag} of step {e.step} is not a plain simple_value")
        total += len(events)
        report.add(f"record_reader/{os.path.basename(path)}", True, records=len(events),
                   steps=f"{events[1].step}..{events[-1].step}" if len(events) > 1 else "-")
    return total


class Captured(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def case_event_accumulator(report, run_dir, rows):
    captured = Captured()
    logging.getLogger("tensorboard").addHandler(captured)
    try:
        acc = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.SCALARS: 0})
        acc.Reload()
    finally:
        logging.getLogger("tensorboard").removeHandler(captured)
    if captured.records:
        oc.fail(f"TensorBoard logged warnings/errors: {captured.records[:5]}")
    want = expected_scalars(rows)
    tags = sorted(acc.Tags()["scalars"])
    if tags != sorted(want):
        oc.fail(f"scalar tags {tags}, want {sorted(want)}")
    n_values = 0
    for tag in tags:
        got = acc.Scalars(tag)
        steps = [e.step for e in got]
        ok = steps == [s for s, _ in want[tag]]
        bad = []
        for e, (s, w) in zip(got, want[tag]):
            if tag.endswith("/cv"):
                good = abs(e.value - w) <= 2e-7 * max(abs(w), 1e-30) or e.value == w
            else:
                good = same_f32(e.value, w)
            if not good:
                bad.append((s, e.value, w))
        ok = ok and not bad
        n_values += len(got)
        report.add(f"event_accumulator/{tag}", ok, steps=len(steps),
                   **({"bad": str(bad[:3])} if bad else {}),
                   **({} if steps == [s for s, _ in want[tag]] else {"got_steps": str(steps)}))
    return n_values


def case_tensorboard_server(report, run_dir, rows):
    want = expected_scalars(rows)
    tb = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    log_path = os.path.join(os.path.dirname(run_dir), "tensorboard_server.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([tb, "--logdir", run_dir, "--host", "127.0.0.1", "--port", "0",
                                 "--load_fast=true"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        base = None
        got = {}
        while time.time() < deadline:
            time.sleep(0.5)
            if proc.poll() is not None:
                oc.fail(f"tensorboard exited {proc.returncode}: {open(log_path).read()[-2000:]}")
            if base is None:
                text = open(log_path).read()
                marker = "http://127.0.0.1:"
                if marker not in text:
                    continue
                port = text.split(marker, 1)[1].split("/", 1)[0]
                base = f"http://127.0.0.1:{port}"

            def get(path):
                with urllib.request.urlopen(base + path, timeout=10) as r:
                    return json.loads(r.read().decode())
            try:
                runs = get("/data/runs")
                tags = get("/data/plugin/scalars/tags").get(".", {})
                if runs != ["."] or sorted(tags) != sorted(want):
                    continue
                for tag in want:
                    q = urllib.parse.urlencode({"run": ".", "tag": tag})
                    got[tag] = get(f"/data/plugin/scalars/scalars?{q}")
            except OSError:
                continue
            if all(len(got.get(t, [])) == len(STEPS) for t in want):
                break
        else:
            oc.fail(f"tensorboard did not serve every tag with {len(STEPS)} steps within 90 s "
                    f"(got {({t: len(v) for t, v in got.items()})}); log: {open(log_path).read()[-1000:]}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    n = 0
    for tag in sorted(want):
        bad = []
        steps = [step for _, step, _ in got[tag]]
        for (_, step, value), (s, w) in zip(got[tag], want[tag]):
            v = float(value)  # the API writes "NaN", "Infinity" as strings
            good = (abs(v - w) <= 2e-7 * max(abs(w), 1e-30) or v == w) if tag.endswith("/cv") else same_f32(v, w)
            if not good:
                bad.append((s, value, w))
            n += 1
        ok = steps == STEPS and not bad
        report.add(f"tensorboard_server/{tag}", ok, steps=len(steps), **({"bad": str(bad[:3])} if bad else {}))
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics-write", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    report = oc.start("tensorboard", args.work, args.metrics_write)
    run_dir = os.path.join(args.work, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    p = subprocess.run([args.metrics_write, run_dir], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    if p.returncode != 0:
        oc.fail(f"metrics_write exited {p.returncode}:\n{p.stdout[-4000:]}")
    reports = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    state = {}

    def jsonl():
        state["rows"] = case_jsonl(run_dir)
        report.add("jsonl", True, lines=len(state["rows"]))

    def accumulator():
        rows = state.get("rows") or read_jsonl(run_dir)
        n = case_event_accumulator(report, run_dir, rows)
        report.add("event_accumulator", True, values=n)

    cases = [
        ("resume_reports", lambda: report.add("resume_reports", True, **case_resume_reports(reports))),
        ("jsonl", jsonl),
        ("record_reader", lambda: report.add("record_reader", True, records=case_record_reader(report, run_dir))),
        ("event_accumulator", accumulator),
        ("tensorboard_server", lambda: report.add(
            "tensorboard_server", True,
            values=case_tensorboard_server(report, run_dir, state.get("rows") or read_jsonl(run_dir)))),
    ]
    oc.run_cases(report, cases, args.only)
    return report.finish()


if __name__ == "__main__":
    oc.main_guard(main)
