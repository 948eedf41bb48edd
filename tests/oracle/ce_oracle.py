"""Compressed-experts oracle: cemoe's compressed experts (CE) against a CE block written here, on top of
transformers' own OLMoE and Phi-MoE blocks.

usage: ce_oracle.py --family olmoe|phimoe --cemoe BUILD/cemoe --ce-grads BUILD/tests/oracle/ce_grads
                    --mpiexec MPIEXEC --work DIR [--only CASE[,CASE]]

The reference. A CE block straight from docs/method.md 1.3 (ce_moe below; nothing of cemoe's is
imported) replaces the forward of transformers' OlmoeSparseMoeBlock / PhimoeSparseMoeBlock and reuses
the module's own router and fused expert weights: route (OLMoE: the router's top-K by softmax, sorted;
Phi-MoE: the sparsemixer's two choices, first then second), main = the first K_m with their ORIGINAL
router weights, aux = the other K_a with weights renormalised over the aux set, (g, u, d) = the
weighted sums of the aux experts' vectors, and each main expert computes
down(silu(gate(x * g)) * up(x * u) * d). Phi-MoE: K = 2, K_m = 1 (the first choice with its
multiplier is main, the second is aux: w' = 1).
The model. `cemoe init --arch FAMILY --preset tiny` (its sizes), loaded by transformers, every
parameter redrawn as model_parity.randomize does (decisive routers), saved by save_pretrained; the CE
vectors are drawn here, 1 + 0.25 N(0, 1) (an all-ones CE would change nothing), and written into the
checkpoint by this script: our layout (compressed_experts.{g,u,d}, num_experts_per_tok = K_m,
"compressed_experts": {...}) and, for OLMoE, the authors' layout (mlp.ces [E, 3, D], rows g, d with a
random tail that must be ignored, u; "use_ce": true, "n_ce": K_a, num_experts_per_tok = K).
Seeds whose routing (captured in the reference's own CE forward) has a near-tie are rejected.

Cases (each row of the report names one comparison):
  logits_*       `cemoe logits` (the checkpoint's CE; and --top-k/--compressed-experts/--main-experts
                 variants) at 1 process and under `mpiexec -n 2 --ep 2`, on both layouts, against the
                 reference; |cemoe - ref| <= LOGIT_TOL(terms) * max |ref|
  grads_*        loss and every gradient (CE vectors included) of sum CE / tokens through the trainer's
                 ComputeGradients (tests/oracle/ce_grads.cc) at 1 process and at ep 2 (both CE
                 aggregation modes) against torch autograd through the reference
  export_*       `cemoe export --ce-layout authors` (tensors and config.json exactly as written here),
                 the authors' folder exported back to our layout, Phi-MoE refused by name; a one-step
                 `cemoe train` with model.top_k and moe.main_experts different from the checkpoint's,
                 exported: config.json routes the run's K = K_m + K_a, and its logits with its trained CE
                 vectors equal the reference's
  plain_*        our layout loaded by transformers' from_pretrained as a plain model: exactly the CE
                 tensors reported unexpected, nothing missing; its logits against `cemoe logits
                 --top-k K_m --main-experts 0` (OLMoE); Phi-MoE: transformers routes 2 whatever
                 num_experts_per_tok says, so the row checks that it equals cemoe's plain top-2 (and
                 the top-1 patch of model_parity.py cemoe's plain top-1); OLMoE's authors' layout:
                 the ces tensors unexpected, transformers runs plain top-K = cemoe --main-experts 0
Tolerances follow tests/tolerance.h: 2 x (terms summed along the longest chain) x eps32 x scale.
"""
import argparse
import contextlib
import json
import math
import os
import re
import shutil
import subprocess

import torch
import torch.nn.functional as F

import model_parity as mp
import oracle_common as oc
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers.models.olmoe import modeling_olmoe
from transformers.models.phimoe import modeling_phimoe

EPS32 = 2.0 ** -23
SAFETY = 2.0            # tests/tolerance.h kSumSafety
MARGIN = 1e-4           # routing decision margin (model_parity.routing_margin) required of a seed
CE_SPREAD = 0.25        # CE vectors ~ 1 + CE_SPREAD * N(0, 1)
B, S = 4, 16            # token rows of the comparisons
EP = 2

FAMILIES = {
    # K, K_m of the checkpoint; logits variants: (name, cemoe logits flags, reference K, K_m)
    "olmoe": dict(K=4, KM=2, moe="mlp", init_seed=3,
                  variants=[("ckpt", [], 4, 2),
                            ("flags_km1", ["--top-k", 4, "--compressed-experts", "--main-experts", 1], 4, 1),
                            ("top3_km2", ["--top-k", 3, "--compressed-experts", "--main-experts", 2], 3, 2)],
                  train=dict(top_k=3, main_experts=1)),
    "phimoe": dict(K=2, KM=1, moe="block_sparse_moe", init_seed=3,
                   variants=[("ckpt", [], 2, 1),
                             ("flags", ["--top-k", 2, "--compressed-experts", "--main-experts", 1], 2, 1)],
                   train=dict(top_k=2, main_experts=1)),
}


# ---------------------------------------------------------------------------------------------------
# The reference CE block (docs/method.md 1.3)


def ce_moe(x, weights, ids, km, experts, g, u, d):
    """x [T, D]; weights, ids [T, K] (sorted best first as routed); g, u [E, D], d [E, I] -> [T, D]."""
    inter = experts.intermediate_dim
    aux_w = weights[:, km:]
    aux_w = aux_w / aux_w.sum(dim=-1, keepdim=True)                 # renormalised over the aux set
    aux = ids[:, km:]
    g_t = torch.einsum("ta,tad->td", aux_w, g[aux])                  # the same for every main expert
    u_t = torch.einsum("ta,tad->td", aux_w, u[aux])
    d_t = torch.einsum("ta,tai->ti", aux_w, d[aux])
    out = torch.zeros_like(x)
    for slot in range(km):
        e = ids[:, slot]
        w_gate = experts.gate_up_proj[e, :inter]                     # [T, I, D]
        w_up = experts.gate_up_proj[e, inter:]
        w_down = experts.down_proj[e]                                 # [T, D, I]
        h = F.silu(torch.einsum("td,tid->ti", x * g_t, w_gate)) * torch.einsum("td,tid->ti", x * u_t, w_up)
        y = torch.einsum("ti,tdi->td", h * d_t, w_down)
        out = out + weights[:, slot, None] * y                        # the ORIGINAL router weight
    return out


def _olmoe_ce_forward(self, hidden_states):
    b, s, dim = hidden_states.shape
    x = hidden_states.reshape(-1, dim)
    _, weights, ids = self.gate(x)
    g, u, d = self._ce
    return ce_moe(x, weights, ids, self._ce_km, self.experts, g, u, d).reshape(b, s, dim)


def _phimoe_ce_forward(self, hidden_states):
    b, s, dim = hidden_states.shape
    x = hidden_states.reshape(-1, dim)
    _, weights, ids = self.router(x)      # eval: the sparsemixer's first and second choices
    g, u, d = self._ce
    return ce_moe(x, weights, ids, self._ce_km, self.experts, g, u, d).reshape(b, s, dim)


@contextlib.contextmanager
def with_ce(model, family, ce, k, km):
    """transformers' model with the reference CE block in every MoE layer: routed top-k, k_m main.
    ce: {layer: (g, u, d)} (tensors, with or without requires_grad)."""
    layers = model.model.layers
    if family == "olmoe":
        cls, fwd = modeling_olmoe.OlmoeSparseMoeBlock, _olmoe_ce_forward
        k0 = [layer.mlp.gate.top_k for layer in layers]
        for layer in layers:
            layer.mlp.gate.top_k = k
    else:
        if k != 2:
            oc.fail("the Phi-MoE reference routes the sparsemixer's two choices (K = 2)")
        cls, fwd = modeling_phimoe.PhimoeSparseMoeBlock, _phimoe_ce_forward
    orig = cls.forward
    for li, layer in enumerate(layers):
        layer.mlp._ce, layer.mlp._ce_km = ce[li], km
    cls.forward = fwd
    try:
        with mp.patched(rope="correct" if family == "phimoe" else None):
            yield model
    finally:
        cls.forward = orig
        for layer in layers:
            del layer.mlp._ce, layer.mlp._ce_km
        if family == "olmoe":
            for layer, k_orig in zip(layers, k0):
                layer.mlp.gate.top_k = k_orig


@torch.no_grad()
def ce_logits(model, family, ce, k, km, tokens):
    with with_ce(model, family, ce, k, km):
        return model(input_ids=tokens).logits.float()


# ---------------------------------------------------------------------------------------------------
# Tolerances (tests/tolerance.h)


def forward_terms(cfg, k, km):
    """Terms summed along the longest chain of one forward pass: per layer the norm (D), q/k/v (D),
    attention (S, then head_dim), o_proj (D), the router (D) and its softmax (E), the CE aggregate
    (K_a), gate/up (D), down (I), the combine (K_m); then the final norm (D) and lm_head (D)."""
    D, I = cfg["hidden_size"], cfg["intermediate_size"]
    E = cfg.get("num_experts") or cfg["num_local_experts"]
    hd = cfg.get("head_dim") or D // cfg["num_attention_heads"]
    per_layer = 5 * D + S + hd + E + (k - km) + I + km
    return cfg["num_hidden_layers"] * per_layer + 2 * D


def logit_tol(cfg, k, km):
    return SAFETY * forward_terms(cfg, k, km) * EPS32


def grad_tol(cfg, k, km):
    # backward retraces the chain (and the loss sums over the vocabulary and the tokens)
    return SAFETY * (2 * forward_terms(cfg, k, km) + cfg["vocab_size"] + B * S) * EPS32


def compare(report, case, got, want, tol, **extra):
    if tuple(got.shape) != tuple(want.shape):
        report.add(case, False, error=f"shape {tuple(got.shape)} != {tuple(want.shape)}", **extra)
        return None
    scale = want.abs().max().item()
    rel = (got - want).abs().max().item() / scale
    report.add(case, bool(torch.isfinite(got).all()) and rel <= tol, rel=rel, tol=tol, scale=scale, **extra)
    return rel


# ---------------------------------------------------------------------------------------------------
# Checkpoints


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def all_tensors(folder):
    out = {}
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".safetensors"):
            out.update(load_file(os.path.join(folder, fn)))
    return out


def draw_ce(cfg, gen):
    D, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    E = cfg.get("num_experts") or cfg["num_local_experts"]
    return {li: tuple(1.0 + CE_SPREAD * torch.randn(E, w, generator=gen) for w in (D, D, I)) for li in range(L)}


def ce_names(family, li):
    moe = FAMILIES[family]["moe"]
    return [f"model.layers.{li}.{moe}.compressed_experts.{x}" for x in "gud"]


def read_ce(folder, family, num_layers):
    """{layer: (g, u, d)} from a folder in either layout (the authors' ces rows g, d[:I], u)."""
    t = all_tensors(folder)
    cfg = read_json(os.path.join(folder, "config.json"))
    I = cfg["intermediate_size"]
    out = {}
    for li in range(num_layers):
        ces = f"model.layers.{li}.mlp.ces"
        if ces in t:
            out[li] = (t[ces][:, 0], t[ces][:, 2], t[ces][:, 1, :I])
        else:
            out[li] = tuple(t[n] for n in ce_names(family, li))
    return out


def write_ours(plain, folder, family, ce, k, km, extra_files=()):
    """Our layout: the plain folder's tensors + compressed_experts.{g,u,d}; num_experts_per_tok = K_m."""
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    t = all_tensors(plain)
    for li, vecs in ce.items():
        for name, v in zip(ce_names(family, li), vecs):
            t[name] = v.contiguous()
    save_file(t, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    cfg = read_json(os.path.join(plain, "config.json"))
    cfg["num_experts_per_tok"] = km
    cfg["compressed_experts"] = {"main_experts": km, "auxiliary_experts": k - km}
    write_json(os.path.join(folder, "config.json"), cfg)
    for src in extra_files:
        shutil.copy(src, folder)


def write_authors(plain, folder, ce, k, km, gen):
    """The authors' layout: mlp.ces [E, 3, D] with rows g, d (first I entries; a random tail that
    readers must ignore), u; "use_ce": true, "n_ce": K_a, num_experts_per_tok = K."""
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    t = all_tensors(plain)
    for li, (g, u, d) in ce.items():
        row1 = 5.0 + torch.randn(g.shape, generator=gen)
        row1[:, :d.shape[1]] = d
        t[f"model.layers.{li}.mlp.ces"] = torch.stack([g, row1, u], dim=1).contiguous()
    save_file(t, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    cfg = read_json(os.path.join(plain, "config.json"))
    cfg["num_experts_per_tok"] = k
    cfg["use_ce"] = True
    cfg["n_ce"] = k - km
    write_json(os.path.join(folder, "config.json"), cfg)


def capture_margin(model, family, fn, ks):
    with mp.capture_router_logits(model, family) as lg:
        fn()
    return mp.routing_margin(lg, family, model.config, ks)


def prepare(args, family):
    """The plain folder, the CE vectors, the reference model and test tokens, with a routing margin
    >= MARGIN in every forward the cases compare (CE at each variant, and plain top-K_m)."""
    fam = FAMILIES[family]
    work = args.work
    init = os.path.join(work, "init")
    if os.path.isdir(init):
        shutil.rmtree(init)
    oc.run_cemoe(args.cemoe, ["init", "--arch", family, "--preset", "tiny", "--seed", fam["init_seed"],
                              "--out", init])
    plain = os.path.join(work, "plain")
    for attempt in range(20):
        seed = 1000 + 17 * attempt
        model, info = mp.load_reference(init, family)
        if mp.loading_problems(info):
            oc.fail(f"from_pretrained of the cemoe init folder: {mp.loading_problems(info)}")
        gen = torch.Generator().manual_seed(seed)
        mp.randomize(model, gen)
        if os.path.isdir(plain):
            shutil.rmtree(plain)
        model.save_pretrained(plain, safe_serialization=True)
        model, _ = mp.load_reference(plain, family)
        cfg = read_json(os.path.join(plain, "config.json"))
        ce = draw_ce(cfg, gen)
        tokens = torch.randint(0, cfg["vocab_size"], (B, S), generator=gen)
        margin = float("inf")
        for _, _, k, km in fam["variants"]:
            margin = min(margin, capture_margin(model, family, lambda: ce_logits(model, family, ce, k, km, tokens),
                                                [k]))
        margin = min(margin, capture_margin(model, family,
                                            lambda: mp.reference_logits(model, family, tokens, topk=fam["KM"]),
                                            [fam["KM"]]))
        if margin >= MARGIN:
            return dict(init=init, plain=plain, model=model, cfg=cfg, ce=ce, tokens=tokens, seed=seed,
                        margin=margin, gen=gen)
    oc.fail(f"no seed with routing margin >= {MARGIN} in 20 tries")


def cemoe_logits(args, folder, tokens, tag, flags=(), launcher=()):
    return mp.cemoe_logits(args.cemoe, folder, tokens, args.work, tag, launcher=launcher, extra=list(flags))[0]


def mpi(args, n):
    cmd = [args.mpiexec, "--oversubscribe"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd + ["-n", n]


# ---------------------------------------------------------------------------------------------------
# Cases


def case_logits(args, family, st, report):
    fam = FAMILIES[family]
    folders = {"ours": os.path.join(args.work, "ours")}
    write_ours(st["plain"], folders["ours"], family, st["ce"], fam["K"], fam["KM"])
    if family == "olmoe":
        folders["authors"] = os.path.join(args.work, "authors")
        write_authors(st["plain"], folders["authors"], st["ce"], fam["K"], fam["KM"], st["gen"])
    for layout, folder in folders.items():
        for name, flags, k, km in fam["variants"]:
            want = ce_logits(st["model"], family, st["ce"], k, km, st["tokens"])
            tol = logit_tol(st["cfg"], k, km)
            got = cemoe_logits(args, folder, st["tokens"], f"{layout}_{name}", flags)
            compare(report, f"logits_{layout}_{name}", got, want, tol, margin=st["margin"])
            if name == "ckpt":
                got = cemoe_logits(args, folder, st["tokens"], f"{layout}_{name}_ep{EP}",
                                   ["--ep", EP, "--placement", "round_robin"], launcher=mpi(args, EP))
                compare(report, f"logits_{layout}_{name}_ep{EP}", got, want, tol)
    # Information: how much the CE change the model (the reference without them, top-K_m).
    want = ce_logits(st["model"], family, st["ce"], fam["K"], fam["KM"], st["tokens"])
    plain = mp.reference_logits(st["model"], family, st["tokens"], topk=fam["KM"])
    report.add("info_ce_effect", True, rel=((plain - want).abs().max() / want.abs().max()).item())
    return folders


def case_grads(args, family, st, folders, report):
    fam = FAMILIES[family]
    k, km = fam["K"], fam["KM"]
    gen = torch.Generator().manual_seed(st["seed"] + 5)
    tokens = st["tokens"]
    targets = torch.randint(0, st["cfg"]["vocab_size"], (B, S), generator=gen)
    for b in range(B):
        targets[b, :2 * b] = -100        # rows hold different numbers of loss tokens
    batch = os.path.join(args.work, "grad_batch.safetensors")
    save_file({"tokens": tokens.contiguous(), "targets": targets.contiguous()}, batch)
    # Reference: torch autograd through transformers + the CE block, eval mode (no jitter).
    model, _ = mp.load_reference(st["plain"], family)
    ce = {li: tuple(v.clone().requires_grad_(True) for v in vecs) for li, vecs in st["ce"].items()}
    with with_ce(model, family, ce, k, km):
        logits = model(input_ids=tokens).logits.float()
    count = int((targets != -100).sum())
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100,
                           reduction="sum") / count
    loss.backward()
    want = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    want_ce = {li: tuple(v.grad.detach().clone() for v in vecs) for li, vecs in ce.items()}
    tol = grad_tol(st["cfg"], k, km)
    runs = [("n1", 1, 1, "experts", "ours"), (f"n{EP}_ep{EP}", EP, EP, "experts", "ours"),
            (f"n{EP}_ep{EP}_source", EP, EP, "source", "ours")]
    if "authors" in folders:
        runs.append((f"n{EP}_ep{EP}_authors", EP, EP, "experts", "authors"))
    for tag, ranks, ep, aggregation, layout in runs:
        out = os.path.join(args.work, f"grads_{tag}")
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.makedirs(out)
        cmd = [str(c) for c in (mpi(args, ranks) if ranks > 1 else []) +
               [args.ce_grads, folders[layout], batch, out, ep, 0, -1, aggregation]]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
        if p.returncode != 0:
            report.error(f"grads_{tag}", f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-3000:]}")
            continue
        res = read_json(os.path.join(out, "result.json"))
        got_model, info = mp.load_reference(os.path.join(out, "grads"), family)
        probs = mp.loading_problems(info)
        unexpected = set(probs.pop("unexpected_keys", []))
        got = dict(got_model.named_parameters())
        worst, at = 0.0, ""
        scale = max(g.abs().max().item() for g in want.values())
        for n, g in want.items():
            d = (got[n].detach() - g).abs().max().item() / scale
            if d > worst or not math.isfinite(d):
                worst, at = d, n
        got_ce = read_ce(os.path.join(out, "grads"), family, len(ce))
        ce_scale = max(v.abs().max().item() for vecs in want_ce.values() for v in vecs)
        ce_worst, ce_at = 0.0, ""
        for li in want_ce:
            for x, gv, wv in zip("gud", got_ce[li], want_ce[li]):
                d = (gv - wv).abs().max().item() / ce_scale
                if d > ce_worst or not math.isfinite(d):
                    ce_worst, ce_at = d, f"layer {li} {x}"
        loss_rel = abs(res["loss"] - loss.item()) / abs(loss.item())
        report.add(f"grads_{tag}", not probs and loss_rel <= tol and worst <= tol and ce_worst <= tol
                   and res["loss_tokens"] == count,
                   loss_rel=loss_rel, grad_rel=worst, grad_worst=at, ce_grad_rel=ce_worst, ce_worst=ce_at,
                   ce_scale=ce_scale, tol=tol, loading=probs or "clean", ce_unexpected=len(unexpected))


def case_export(args, family, st, folders, report):
    fam = FAMILIES[family]
    k, km = fam["K"], fam["KM"]
    cfg = st["cfg"]
    D, I = cfg["hidden_size"], cfg["intermediate_size"]
    out = os.path.join(args.work, "export_authors")
    if os.path.isdir(out):
        shutil.rmtree(out)
    cmd = [args.cemoe, "export", "--from", folders["ours"], "--out", out, "--ce-layout", "authors"]
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=300)
    if family == "phimoe":
        want_msg = f"intermediate_size {I} > hidden_size {D}"
        report.add("export_authors_refused", p.returncode == 1 and want_msg in p.stdout and not os.path.exists(out),
                   rc=p.returncode, message=p.stdout.strip()[-300:])
        return
    if p.returncode != 0:
        oc.fail(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout[-3000:]}")
    got_t, src_t = all_tensors(out), all_tensors(folders["ours"])
    conf = read_json(os.path.join(out, "config.json"))
    problems = []
    for li, (g, u, d) in st["ce"].items():
        ces = got_t.pop(f"model.layers.{li}.mlp.ces", None)
        pad = torch.ones(g.shape[0], D - I)
        want = torch.stack([g, torch.cat([d, pad], 1), u], dim=1)
        if ces is None or not torch.equal(ces, want):
            problems.append(f"layer {li}: ces {None if ces is None else tuple(ces.shape)} != rows g, d|ones, u")
        for n in ce_names(family, li):
            src_t.pop(n)
    if sorted(got_t) != sorted(src_t) or any(not torch.equal(got_t[n], src_t[n]) for n in src_t):
        problems.append("the other tensors differ from the source's")
    keys = {x: conf.get(x) for x in ("num_experts_per_tok", "use_ce", "n_ce", "compressed_experts")}
    if keys != {"num_experts_per_tok": k, "use_ce": True, "n_ce": k - km, "compressed_experts": None}:
        problems.append(f"config.json {keys}")
    report.add("export_authors_layout", not problems, problems="; ".join(problems) or "none", config=keys)
    want = ce_logits(st["model"], family, st["ce"], k, km, st["tokens"])
    got = cemoe_logits(args, out, st["tokens"], "export_authors")
    compare(report, "export_authors_logits", got, want, logit_tol(cfg, k, km))
    # The authors' folder written here (random tail in row 1) back to our layout.
    back = os.path.join(args.work, "export_back")
    if os.path.isdir(back):
        shutil.rmtree(back)
    oc.run_cemoe(args.cemoe, ["export", "--from", folders["authors"], "--out", back])
    got_t = all_tensors(back)
    conf = read_json(os.path.join(back, "config.json"))
    same = all(torch.equal(got_t.get(n, torch.empty(0)), v)
               for li, vecs in st["ce"].items() for n, v in zip(ce_names(family, li), vecs))
    keys = {x: conf.get(x) for x in ("num_experts_per_tok", "use_ce", "n_ce", "compressed_experts")}
    report.add("export_authors_to_ours", same and not any(".ces" in n for n in got_t) and keys == {
        "num_experts_per_tok": km, "use_ce": None, "n_ce": None,
        "compressed_experts": {"main_experts": km, "auxiliary_experts": k - km}}, vectors_equal=same, config=keys)


def case_train_export(args, family, st, folders, report):
    """One `cemoe train` step with CE from our folder at the recipe's model.top_k / moe.main_experts,
    exported: config.json and logits (trained CE vectors included) against the reference."""
    fam = FAMILIES[family]
    k, km = fam["train"]["top_k"], fam["train"]["main_experts"]
    src = os.path.join(args.work, "ours_tok")
    init = st["init"]
    write_ours(st["plain"], src, family, st["ce"], fam["K"], fam["KM"],
               extra_files=[os.path.join(init, f) for f in os.listdir(init) if f.startswith("tokenizer")])
    run = os.path.join(args.work, "run")
    if os.path.isdir(run):
        shutil.rmtree(run)
    recipe = os.path.join(args.work, "recipe.textproto")
    data = os.path.join(oc.ROOT, "recipes", "tiny", "data", "chat.jsonl")
    with open(recipe, "w") as f:
        f.write(f"""model {{ path: "{src}" top_k: {k} }}
data {{ train {{ path: "{data}" }} chat_template: "chatml" max_length: 64
       cache_dir: "{os.path.join(args.work, 'cache')}" }}
moe {{ compressed_experts: "true" main_experts: {km} }}
optim {{ lr: 0.01 }}
train {{ global_batch_size: 2 micro_batch_size: 2 max_steps: 1 }}
checkpoint {{ resume: false }}
logging {{ tensorboard: false }}
""")
    oc.run_cemoe(args.cemoe, ["train", recipe, "--run-dir", run])
    out = os.path.join(args.work, "export_run")
    if os.path.isdir(out):
        shutil.rmtree(out)
    oc.run_cemoe(args.cemoe, ["export", "--from", run, "--out", out])
    conf = read_json(os.path.join(out, "config.json"))
    keys = {x: conf.get(x) for x in ("num_experts_per_tok", "compressed_experts")}
    want_keys = {"num_experts_per_tok": km, "compressed_experts": {"main_experts": km, "auxiliary_experts": k - km}}
    ckpt_conf = read_json(os.path.join(run, "checkpoints", "step-00000001", "model", "config.json"))
    model, info = mp.load_reference(out, family)
    ce = read_ce(out, family, len(st["ce"]))
    moved = max((a - b).abs().max().item() for li in ce for a, b in zip(ce[li], st["ce"][li]))
    report.add("export_run_config", keys == want_keys and moved > 0, config=keys,
               checkpoint_config={x: ckpt_conf.get(x) for x in keys}, ce_moved=moved)
    gen = torch.Generator().manual_seed(st["seed"] + 9)
    for attempt in range(20):
        tokens = torch.randint(0, st["cfg"]["vocab_size"], (B, S), generator=gen)
        margin = capture_margin(model, family, lambda: ce_logits(model, family, ce, k, km, tokens), [k])
        if margin >= MARGIN:
            break
    want = ce_logits(model, family, ce, k, km, tokens)
    got = cemoe_logits(args, out, tokens, "export_run")
    compare(report, "export_run_logits", got, want, logit_tol(st["cfg"], k, km), margin=margin)


def case_plain(args, family, st, folders, report):
    """Our layout in transformers: a plain top-K_m model (Phi-MoE: see below)."""
    fam = FAMILIES[family]
    km = fam["KM"]
    out = os.path.join(args.work, "export_ours")
    if os.path.isdir(out):
        shutil.rmtree(out)
    oc.run_cemoe(args.cemoe, ["export", "--from", folders["ours"], "--out", out])
    model, info = mp.load_reference(out, family)
    probs = mp.loading_problems(info)
    unexpected = sorted(probs.pop("unexpected_keys", []))
    # transformers 5 reports Phi-MoE's block_sparse_moe.* keys under its own renamed prefix mlp.*
    want_unexpected = sorted(n.replace(".block_sparse_moe.", ".mlp.") for li in st["ce"]
                             for n in ce_names(family, li))
    report.add("plain_load", not probs and unexpected == want_unexpected and
               model.config.num_experts_per_tok == km,
               unexpected=f"{len(unexpected)} (the CE tensors: {unexpected == want_unexpected})",
               first=unexpected[:1],
               other_problems=probs or "none", num_experts_per_tok=model.config.num_experts_per_tok)
    tol = logit_tol(st["cfg"], km, km)
    with torch.no_grad(), mp.patched(rope="correct" if family == "phimoe" else None):
        native = model(input_ids=st["tokens"]).logits.float()    # transformers as loaded, no patch
    plain_km = cemoe_logits(args, out, st["tokens"], "plain_km", ["--top-k", km, "--main-experts", 0])
    if family == "olmoe":
        compare(report, "plain_logits_topkm", plain_km, native, tol)
        # The authors' layout in transformers: use_ce / n_ce are unknown to OlmoeConfig (kept as
        # attributes, unused), the ces tensors are unexpected, and the model runs plain top-K.
        k = fam["K"]
        model, info = mp.load_reference(folders["authors"], family)
        probs = mp.loading_problems(info)
        unexpected = sorted(probs.pop("unexpected_keys", []))
        want_unexpected = sorted(f"model.layers.{li}.mlp.ces" for li in st["ce"])
        report.add("plain_authors_load", not probs and unexpected == want_unexpected and
                   model.config.num_experts_per_tok == k, unexpected=unexpected,
                   other_problems=probs or "none", num_experts_per_tok=model.config.num_experts_per_tok)
        with torch.no_grad():
            native = model(input_ids=st["tokens"]).logits.float()
        plain_k = cemoe_logits(args, folders["authors"], st["tokens"], "plain_authors",
                               ["--main-experts", 0])
        compare(report, "plain_authors_logits_topk", plain_k, native, logit_tol(st["cfg"], k, k))
        return
    # Phi-MoE: transformers' sparsemixer routes two experts whatever num_experts_per_tok (1) says.
    plain_2 = cemoe_logits(args, out, st["tokens"], "plain_top2", ["--top-k", 2, "--main-experts", 0])
    compare(report, "plain_phimoe_transformers_is_top2", plain_2, native, tol)
    rel1 = ((plain_km - native).abs().max() / native.abs().max()).item()
    report.add("plain_phimoe_transformers_is_not_top1", rel1 > 100 * tol, rel=rel1)
    top1 = mp.reference_logits(model, family, st["tokens"], topk=1)   # model_parity's top-1 patch
    compare(report, "plain_phimoe_top1_patch", plain_km, top1, tol)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", required=True, choices=sorted(FAMILIES))
    ap.add_argument("--cemoe", required=True)
    ap.add_argument("--ce-grads", required=True, help="tests/oracle/ce_grads.cc")
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    report = oc.start(f"ce_{args.family}", args.work, args.cemoe, args.ce_grads)
    st = prepare(args, args.family)
    print(f"ce oracle: seed {st['seed']}, routing margin {st['margin']:.3g}", flush=True)
    folders = {}

    def logits():
        folders.update(case_logits(args, args.family, st, report))

    def need(fn):
        def run():
            if "ours" not in folders:
                oc.fail("this case needs the logits case (it writes the folders)")
            fn(args, args.family, st, folders, report)
        return run

    oc.run_cases(report, [("logits", logits), ("grads", need(case_grads)), ("export", need(case_export)),
                          ("train_export", need(case_train_export)), ("plain", need(case_plain))], args.only)
    return report.finish()


if __name__ == "__main__":
    oc.main_guard(main)
