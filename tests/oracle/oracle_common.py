"""Shared helpers of the oracle tests (tests/oracle/*.py): version check against the pins, running the
cemoe binary, comparing logits, and collecting results into one JSON report per test."""
import importlib.metadata
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REQUIREMENTS = os.path.join(ROOT, "launch", "oracle-requirements.txt")


def check_pinned_versions():
    """Fails when the environment does not hold exactly the pinned versions: the tolerances and the
    transformers quirks in docs/oracle.md are those of these versions."""
    bad = []
    found = {}
    with open(REQUIREMENTS) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line or "==" not in line:
                continue
            name, want = (s.strip() for s in line.split("==", 1))
            try:
                have = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                have = None
            found[name] = have
            # torch's local version label (+cu132, +cpu) does not count.
            if have is None or have.split("+", 1)[0] != want:
                bad.append(f"{name}: pinned {want}, installed {have}")
    if bad:
        fail("the oracle environment does not match launch/oracle-requirements.txt "
             "(run bash launch/oracle_env.sh): " + "; ".join(bad))
    return found


class Failure(Exception):
    pass


def fail(msg):
    raise Failure(msg)


def run_cemoe(binary, args, timeout=300, launcher=()):
    """Runs `[LAUNCHER...] cemoe ARGS` (LAUNCHER: e.g. mpiexec -n 2); a non-zero exit is a test
    failure with cemoe's output attached."""
    t0 = time.time()
    cmd = [str(a) for a in launcher] + [binary] + [str(a) for a in args]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    dt = time.time() - t0
    if p.returncode != 0:
        fail(f"{' '.join(cmd)} exited {p.returncode} after {dt:.1f} s:\n{p.stdout[-4000:]}")
    return p.stdout, dt


def check_binary(binary):
    if not binary or not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        fail(f"no cemoe binary at {binary!r} (build it: cmake --build build --target cemoe)")


def start(name, work, *binaries):
    """The common start of an oracle script: checks the pinned versions and the binaries it runs,
    makes the work folder and returns the script's Report."""
    print("oracle versions:", check_pinned_versions(), flush=True)
    for b in binaries:
        check_binary(b)
    os.makedirs(work, exist_ok=True)
    return Report(name, work)


def selected(only):
    """The set of case names of --only (a comma list); empty means every case."""
    return set(filter(None, only.split(",")))


def run_cases(report, cases, only=""):
    """Runs fn() for every (name, fn) of `cases` that --only selects. A Failure becomes a failed row
    and the other cases still run. Returns {name: fn's result} for the cases that completed."""
    chosen = selected(only)
    done = {}
    for name, fn in cases:
        if chosen and name not in chosen:
            continue
        try:
            done[name] = fn()
        except Failure as e:
            report.error(name, str(e))
    return done


class Report:
    """Collects one row per comparison and prints a table; writes results.json in the work folder.
    The test fails at the end if any row failed (every case still runs, to report them all)."""

    def __init__(self, name, work):
        self.name = name
        self.work = work
        self.rows = []
        self.failures = []
        self.t0 = time.time()

    def add(self, case, ok, **fields):
        row = {"case": case, "ok": bool(ok), **fields}
        self.rows.append(row)
        extra = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        print(f"[{'PASS' if ok else 'FAIL'}] {self.name}/{case} {extra}", flush=True)
        if not ok:
            self.failures.append(case)

    def error(self, case, msg):
        self.rows.append({"case": case, "ok": False, "error": msg})
        self.failures.append(case)
        print(f"[FAIL] {self.name}/{case}: {msg}", flush=True)

    def finish(self):
        dt = time.time() - self.t0
        with open(os.path.join(self.work, "results.json"), "w") as f:
            json.dump({"test": self.name, "seconds": dt, "rows": self.rows}, f, indent=1)
        n = len(self.rows)
        if self.failures:
            print(f"{self.name}: {len(self.failures)} of {n} comparisons FAILED in {dt:.1f} s: "
                  f"{', '.join(self.failures)}", flush=True)
            return 1
        print(f"{self.name}: all {n} comparisons passed in {dt:.1f} s", flush=True)
        return 0


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def main_guard(fn):
    """Runs fn() and turns a Failure or any exception into exit status 1 with a clear message."""
    try:
        rc = fn()
    except Failure as e:
        print(f"oracle: FAIL: {e}", file=sys.stderr, flush=True)
        rc = 1
    except Exception:  # noqa: BLE001 - any crash of the oracle is a failure, never a skip
        import traceback
        traceback.print_exc()
        rc = 1
    sys.exit(rc)
