"""safetensors oracle: cemoe's reader and writer (model/safetensors.h, driven by st_roundtrip) against the
safetensors library.

usage: safetensors_oracle.py --st-roundtrip BUILD/tests/oracle/st_roundtrip --work DIR

1. cemoe writes (st_roundtrip write): every dtype LibTorch has, 0-d / empty / 2-d / 3-d tensors, special
   float values, a transposed source, single file with metadata, single file without metadata, sharded
   folder with index. safetensors.safe_open must read each to bit-identical values (NaN compared as NaN),
   the same metadata, and the index must map every tensor to the shard holding it with
   total_size = the sum of tensor bytes.
2. The safetensors library writes (save_file): every dtype it knows (random bit patterns, so every
   exponent/NaN/subnormal pattern occurs), 0-d and empty tensors, metadata, a file with no tensors, a file
   without metadata, a sharded folder written like transformers does. cemoe reads each (st_roundtrip
   read), re-saves what it loaded, and the bytes must be identical. Dtypes cemoe's LibTorch cannot hold
   (EXPECTED_UNSUPPORTED) must instead fail cleanly, with an error naming the tensor or dtype.
"""
import argparse
import json
import math
import os
import shutil
import subprocess

import torch
from safetensors import safe_open
from safetensors.torch import save_file

import oracle_common as oc

# Dtypes LibTorch 1.13 has no scalar type for: cemoe lists them but Get() throws (model/safetensors.h).
# A LibTorch 2.x build loads F8_E4M3 F8_E5M2 (2.1+) and U16 U32 U64 (2.3+); those are then compared
# like the others (and must be re-saved with the same dtype).
EXPECTED_UNSUPPORTED = {"U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"}

TORCH_OF = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32,
    "I64": torch.int64, "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32,
    "F64": torch.float64, "C64": torch.complex64, "U16": torch.uint16, "U32": torch.uint32,
    "U64": torch.uint64, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "F8_E4M3FNUZ": torch.float8_e4m3fnuz, "F8_E5M2FNUZ": torch.float8_e5m2fnuz,
}
FLOATS = {"F16", "BF16", "F32", "F64"}
SHAPES = [("scalar", []), ("empty", [0]), ("empty3", [2, 0, 3]), ("mat", [3, 5]), ("cube", [2, 3, 4])]
WRITE_DTYPES = ["BOOL", "U8", "I8", "I16", "I32", "I64", "F16", "BF16", "F32", "F64", "C64"]
METADATA = {"format": "pt", "producer": "cemoe st_roundtrip", "unicode": "\u00fcn\u00ef\u2713", "empty": ""}


# ----------------------------------------------------------------------------------------------
# Expected values of `st_roundtrip write` (mirror of Pattern()/Specials() in st_roundtrip.cc)

def pattern(dt, shape, salt):
    n = math.prod(shape)
    i = torch.arange(n, dtype=torch.int64) + salt
    t = TORCH_OF[dt]
    if dt == "BOOL":
        v = (i % 3) == 0
    elif dt in ("U8", "I8", "I16", "I32", "I64"):
        k = (i * 37) % 227
        v = (k if dt == "U8" else k - 100).to(t)
    else:
        re = ((i * 7) % 98).to(torch.float64) * 0.25 - 12.0
        if dt == "C64":
            im = ((i * 11) % 98).to(torch.float64) * -0.5 + 20.0
            v = torch.complex(re.to(torch.float32), im.to(torch.float32))
        else:
            v = re.to(t)
    return v.reshape(shape)


def specials(dt):
    vals = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 2.0 ** -20, 2.0 ** -130, -65504.0],
                        dtype=torch.float64)
    if dt in ("F16", "BF16"):
        vals = vals.to(torch.float32)
    return vals.to(TORCH_OF[dt])


def expected_written():
    out = {}
    for dt in WRITE_DTYPES:
        for salt, (kind, shape) in enumerate(SHAPES):
            out[f"{dt}.{kind}"] = pattern(dt, shape, salt)
        if dt in FLOATS:
            out[f"{dt}.special"] = specials(dt)
    out["F32.transposed"] = pattern("F32", [4, 6], 9).t().contiguous()
    return out


def same(a, b):
    """Bit-identical, except that NaN equals NaN whatever its payload."""
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False, f"{a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"
    if a.numel() == 0:
        return True, ""
    if a.is_floating_point() or a.is_complex():
        fa = torch.view_as_real(a) if a.is_complex() else a
        fb = torch.view_as_real(b) if b.is_complex() else b
        if fa.dtype in (torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz):
            fa, fb = fa.float(), fb.float()
        na, nb = torch.isnan(fa), torch.isnan(fb)
        if not torch.equal(na, nb):
            return False, "NaN positions differ"
        ok = raw_bytes(fa.masked_fill(na, 0)) == raw_bytes(fb.masked_fill(nb, 0))
    else:
        ok = raw_bytes(a) == raw_bytes(b)
    return ok, "" if ok else "bytes differ"


def raw_bytes(t):
    """The little-endian bytes of t (0-d tensors included)."""
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def read_with_safe_open(path):
    tensors = {}
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return tensors, meta


def check_cemoe_written(binary, work, report):
    out = os.path.join(work, "cemoe_written")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    p = subprocess.run([binary, "write", out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=120)
    if p.returncode != 0:
        report.error("cemoe_write", f"st_roundtrip write exited {p.returncode}: {p.stdout[-2000:]}")
        return
    want = expected_written()
    for fname, want_meta in (("single.safetensors", METADATA), ("nometa.safetensors", None)):
        try:
            got, meta = read_with_safe_open(os.path.join(out, fname))
        except Exception as e:  # noqa: BLE001
            report.error(f"cemoe_write/{fname}", f"safe_open failed: {type(e).__name__}: {e}")
            continue
        bad = _compare_sets(got, want)
        report.add(f"cemoe_write/{fname}", not bad and meta == want_meta, tensors=len(got),
                   mismatches=bad[:5] or "none", metadata=meta)
    # Sharded folder: index + shards.
    folder = os.path.join(out, "sharded")
    try:
        with open(os.path.join(folder, "model.safetensors.index.json")) as f:
            index = json.load(f)
        got = {}
        shard_ok = []
        for shard in sorted(set(index["weight_map"].values())):
            t, meta = read_with_safe_open(os.path.join(folder, shard))
            shard_ok.append(meta == METADATA)
            for k, v in t.items():
                if index["weight_map"].get(k) != shard:
                    shard_ok.append(False)
                got[k] = v
        total = sum(v.numel() * v.element_size() for v in want.values())
        bad = _compare_sets(got, want)
        files = sorted(os.listdir(folder))
        names_ok = all(fn == "model.safetensors.index.json" or
                       (fn.startswith("model-") and "-of-" in fn and fn.endswith(".safetensors")) for fn in files)
        report.add("cemoe_write/sharded", not bad and all(shard_ok) and names_ok and
                   index.get("metadata", {}).get("total_size") == total and set(index["weight_map"]) == set(want),
                   shards=len(files) - 1, total_size=index.get("metadata", {}).get("total_size"), want_total=total,
                   mismatches=bad[:5] or "none")
    except Exception as e:  # noqa: BLE001
        report.error("cemoe_write/sharded", f"{type(e).__name__}: {e}")


def _compare_sets(got, want):
    bad = []
    for k in sorted(set(got) | set(want)):
        if k not in got or k not in want:
            bad.append(f"{k}: {'missing' if k not in got else 'unexpected'}")
            continue
        ok, why = same(got[k], want[k])
        if not ok:
            bad.append(f"{k}: {why}")
    return bad


# ----------------------------------------------------------------------------------------------
# Files written by the safetensors library, read by cemoe

def random_tensor(dt, shape, gen):
    t = TORCH_OF[dt]
    n = math.prod(shape)
    if dt == "BOOL":
        return torch.randint(0, 2, (n,), generator=gen).bool().reshape(shape)
    size = torch.empty(0, dtype=t).element_size()
    raw = torch.randint(0, 256, (n * size,), generator=gen, dtype=torch.int64).to(torch.uint8)
    if dt == "C64":
        return raw.view(torch.float32).view(torch.complex64).reshape(shape) if n else torch.empty(shape, dtype=t)
    return raw.view(t).reshape(shape) if n else torch.empty(shape, dtype=t)


def library_files(work):
    """Writes the library's files; returns {label: (path, {name: tensor}, metadata or None)}."""
    d = os.path.join(work, "lib_written")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    gen = torch.Generator().manual_seed(1234)
    main_dtypes = [dt for dt in TORCH_OF if "FNUZ" not in dt]
    all_t = {}
    for dt in main_dtypes:
        for kind, shape in SHAPES:
            all_t[f"{dt}.{kind}"] = random_tensor(dt, shape, gen)
    files = {}
    p = os.path.join(d, "all_dtypes.safetensors")
    save_file(all_t, p, metadata=METADATA)
    files["lib_all_dtypes_meta"] = (p, all_t, METADATA)
    p = os.path.join(d, "nometa.safetensors")
    supported = {k: v for k, v in all_t.items() if k.split(".")[0] not in EXPECTED_UNSUPPORTED}
    save_file(supported, p)
    files["lib_nometa"] = (p, supported, None)
    p = os.path.join(d, "no_tensors.safetensors")
    save_file({}, p, metadata={"format": "pt"})
    files["lib_no_tensors"] = (p, {}, {"format": "pt"})
    fnuz = {f"{dt}.mat": random_tensor(dt, [3, 5], gen) for dt in ("F8_E4M3FNUZ", "F8_E5M2FNUZ")}
    p = os.path.join(d, "f8_fnuz.safetensors")
    save_file(fnuz, p, metadata={"format": "pt"})
    files["lib_f8_fnuz"] = (p, fnuz, {"format": "pt"})
    # Sharded like transformers: shards of whole tensors + index with total_size and weight_map.
    folder = os.path.join(d, "sharded")
    os.makedirs(folder)
    names = sorted(supported)
    groups = [names[i::3] for i in range(3)]
    weight_map = {}
    for i, g in enumerate(groups):
        shard = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file({k: supported[k] for k in g}, os.path.join(folder, shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in g})
    total = sum(v.numel() * v.element_size() for v in supported.values())
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    files["lib_sharded_folder"] = (folder, supported, None)
    return files


def check_cemoe_reads(binary, work, report):
    for label, (path, tensors, meta) in library_files(work).items():
        out = os.path.join(work, "cemoe_read", label)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        p = subprocess.run([binary, "read", path, out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=120)
        if p.returncode != 0 or not os.path.exists(os.path.join(out, "report.json")):
            report.error(label, f"st_roundtrip read exited {p.returncode}: {p.stdout[-2000:]}")
            continue
        with open(os.path.join(out, "report.json")) as f:
            r = json.load(f)
        if "open_error" in r:
            # Acceptable only for a file whose dtypes cemoe does not know, with an error naming one.
            dts = {k.split(".")[0] for k in tensors}
            ok = bool(dts) and dts <= EXPECTED_UNSUPPORTED and any(dt in r["open_error"] for dt in dts)
            report.add(label, ok, open_error=r["open_error"][:200], note="documented limitation" if ok else "")
            continue
        problems = []
        listed = {t["name"]: t for t in r["tensors"]}
        if set(listed) != set(tensors):
            problems.append(f"names differ: missing {sorted(set(tensors) - set(listed))[:3]}, "
                            f"extra {sorted(set(listed) - set(tensors))[:3]}")
        if meta is not None and r.get("metadata") != meta and not os.path.isdir(path):
            problems.append(f"metadata {r.get('metadata')} != {meta}")
        if meta is None and not os.path.isdir(path) and r.get("metadata"):
            problems.append(f"metadata {r.get('metadata')} from a file without __metadata__")
        if os.path.isdir(path):
            want_total = sum(v.numel() * v.element_size() for v in tensors.values())
            if r.get("total_size") != want_total or len(r.get("shard_files", [])) != 3:
                problems.append(f"total_size {r.get('total_size')} / shards {r.get('shard_files')}")
        resaved, _ = read_with_safe_open(os.path.join(out, "resaved.safetensors"))
        unsupported = []
        for name, t in tensors.items():
            dt = name.split(".")[0]
            info = listed.get(name)
            if info is None:
                continue
            if info["dtype"] != dt or info["shape"] != list(t.shape):
                problems.append(f"{name}: cemoe parsed {info['dtype']}{info['shape']}")
            if not info["loaded"]:
                if dt in EXPECTED_UNSUPPORTED and (dt in info.get("error", "") or name in info.get("error", "")):
                    unsupported.append(dt)
                else:
                    problems.append(f"{name}: Get() failed: {info.get('error', '')[:160]}")
                continue
            if name not in resaved:
                problems.append(f"{name}: not re-saved")
                continue
            if resaved[name].dtype != t.dtype:
                problems.append(f"{name}: re-saved as {resaved[name].dtype}, written as {t.dtype}")
            elif raw_bytes(resaved[name]) != raw_bytes(t) or list(resaved[name].shape) != list(t.shape):
                problems.append(f"{name}: bytes differ after cemoe load + save")
        report.add(label, not problems, tensors=len(tensors), problems=problems[:5] or "none",
                   unsupported_clean_errors=sorted(set(unsupported)) or "none")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--st-roundtrip", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    report = oc.start("safetensors", args.work, args.st_roundtrip)
    check_cemoe_written(args.st_roundtrip, args.work, report)
    check_cemoe_reads(args.st_roundtrip, args.work, report)
    return report.finish()


if __name__ == "__main__":
    oc.main_guard(main)
