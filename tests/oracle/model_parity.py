"""Model parity oracle: `cemoe logits` against transformers' float32 eager logits, and `cemoe init`
folders loaded by transformers' from_pretrained.

usage: model_parity.py --family olmoe|phimoe --cemoe BUILD/cemoe --work DIR [--only CASE[,CASE]]

For every case the script builds a tiny random model with transformers' own classes (every parameter
drawn at random, norms and biases included, so a weight that cemoe ignores changes the logits), saves it
with save_pretrained (safetensors; one file, sharded, or v5's fused expert layout; float32 or bf16), loads
it back with from_pretrained(dtype=float32, attn_implementation="eager", experts_implementation="eager")
as the reference, runs `cemoe logits` on the same folder and compares:
    max |cemoe - transformers| <= TOL * max |transformers|      (TOL = 1e-4)
Routing near-ties would make the comparison depend on float rounding, so the generator rejects seeds
whose routing decision margin is below MARGIN anywhere (see routing_margin()).
Reverse direction: `cemoe init` writes a folder; from_pretrained must load it with no missing,
unexpected or mismatched keys and give the same logits as `cemoe logits` on it.
See docs/oracle.md for the transformers quirks handled here (Phi-MoE longrope in v5, sparsemixer top-1).
"""
import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess

import torch

import oracle_common as oc

# Relative to the logits' scale (tests/tolerance.h has the rule). The worst-case rule there, 2 x terms
# summed along a forward pass (~600 for these tiny models at S = 12) x float32 eps, gives 1.5e-4;
# measured errors are <= 6.3e-7 of the scale (docs/oracle.md), so 1e-4 keeps a margin of ~150 and
# still fails the 5e-4 error of a norm weight scaled by 1.0005.
TOL = 1e-4
MARGIN = 1e-4
REVERSE_MARGIN = 2e-5
torch.set_num_threads(int(os.environ.get("CEMOE_ORACLE_THREADS", "2")))

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
import transformers  # noqa: E402
from transformers import OlmoeConfig, OlmoeForCausalLM, PhimoeConfig, PhimoeForCausalLM  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402
from transformers.models.phimoe import modeling_phimoe  # noqa: E402

transformers.logging.set_verbosity_error()
try:
    transformers.utils.logging.disable_progress_bar()
except AttributeError:
    pass

# ---------------------------------------------------------------------------------------------------
# Tiny configurations. Every field that changes the math is varied in some case.

OLMOE_BASE = dict(vocab_size=128, hidden_size=32, intermediate_size=16, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, num_experts=8, num_experts_per_tok=4,
                  norm_topk_prob=False, clip_qkv=None, rms_norm_eps=1e-5, max_position_embeddings=64,
                  rope_theta=10000.0, attention_bias=False, tie_word_embeddings=False,
                  eos_token_id=2, pad_token_id=1, bos_token_id=None)

PHI_SHORT = [1.0 + 0.05 * i for i in range(4)]          # head_dim 8 -> 4 factors
PHI_LONG = [1.5 + 0.75 * i for i in range(4)]
PHI_OMP = 16
PHI_BASE = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, num_local_experts=6, num_experts_per_tok=2,
                rms_norm_eps=1e-5, max_position_embeddings=64, rope_theta=10000.0,
                rope_scaling={"type": "longrope", "short_factor": PHI_SHORT, "long_factor": PHI_LONG,
                              "short_mscale": 1.1, "long_mscale": 1.35,
                              "original_max_position_embeddings": PHI_OMP},
                attention_bias=True, lm_head_bias=True, tie_word_embeddings=False,
                router_jitter_noise=0.01, input_jitter_noise=0.01, sliding_window=None,
                bos_token_id=1, eos_token_id=2, pad_token_id=None)

B = 2
S_SHORT = 12          # < omp
S_LONG = 24           # > omp (Phi-MoE longrope long factors)

# case: name, config overrides, weights dtype, layout, token lengths, top-k variants
OLMOE_CASES = [
    dict(name="gqa_f32_single_topk", cfg={}, dtype="f32", layout="single", lens=[S_SHORT], topk=[1, 2, 3, 4]),
    dict(name="normtopk_sharded_topk", cfg=dict(norm_topk_prob=True), dtype="f32", layout="sharded",
         lens=[S_SHORT], topk=[1, 2, 3, 4]),
    dict(name="mqa_clipqkv_theta", cfg=dict(num_key_value_heads=1, clip_qkv=0.8, rope_theta=500.0),
         dtype="f32", layout="single", lens=[S_SHORT, 20], topk=[None]),
    dict(name="mha_attnbias_tied", cfg=dict(num_key_value_heads=4, attention_bias=True, tie_word_embeddings=True),
         dtype="f32", layout="single", lens=[S_SHORT], topk=[None]),
    dict(name="bf16_sharded_clip", cfg=dict(clip_qkv=1.5, norm_topk_prob=True), dtype="bf16", layout="sharded",
         lens=[S_SHORT], topk=[None, 2]),
    dict(name="fused_v5_layout", cfg={}, dtype="f32", layout="fused", lens=[S_SHORT], topk=[None]),
]
PHI_CASES = [
    dict(name="longrope_bias_single_top1", cfg={}, dtype="f32", layout="single",
         lens=[S_SHORT, PHI_OMP, S_LONG], topk=[None, 1]),
    dict(name="nobias_tied_jitter_sharded", cfg=dict(attention_bias=False, lm_head_bias=False,
                                                     tie_word_embeddings=True, router_jitter_noise=0.2),
         dtype="f32", layout="sharded", lens=[S_SHORT, S_LONG], topk=[None, 1]),
    dict(name="bf16_sharded_mha", cfg=dict(num_key_value_heads=4, router_jitter_noise=0.1), dtype="bf16",
         layout="sharded", lens=[S_SHORT, S_LONG], topk=[None]),
    dict(name="fused_v5_layout", cfg={}, dtype="f32", layout="fused", lens=[S_SHORT, S_LONG], topk=[None]),
    dict(name="plain_rope_no_scaling", cfg=dict(rope_scaling=None, rope_theta=2000.0), dtype="f32", layout="single",
         lens=[S_SHORT, S_LONG], topk=[None]),
]

FAMILY = {
    "olmoe": dict(config_cls=OlmoeConfig, model_cls=OlmoeForCausalLM, base=OLMOE_BASE, cases=OLMOE_CASES),
    "phimoe": dict(config_cls=PhimoeConfig, model_cls=PhimoeForCausalLM, base=PHI_BASE, cases=PHI_CASES),
}

# ---------------------------------------------------------------------------------------------------
# Model generation


def randomize(model, gen):
    """Draws every parameter at random: linear weights ~ N(0, 1/fan_in), embeddings ~ N(0, 1),
    norm weights ~ 1 + N(0, 0.2^2), biases ~ N(0, 0.1^2), routers ~ N(0, 4/hidden) (decisive routing)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = p.shape
            r = torch.randn(shape, generator=gen, dtype=torch.float32)
            if "norm" in name and name.endswith("weight"):
                v = 1.0 + 0.2 * r
            elif name.endswith("bias"):
                v = 0.1 * r
            elif "embed_tokens" in name:
                v = r
            elif name.endswith("mlp.gate.weight") or name.endswith("mlp.router.weight"):
                v = r * (2.0 / math.sqrt(shape[-1]))
            else:
                v = r / math.sqrt(shape[-1])
            p.copy_(v.to(p.dtype))


def router_modules(model, family):
    if family == "olmoe":
        return [layer.mlp.gate for layer in model.model.layers]
    return [layer.mlp.router for layer in model.model.layers]


def routing_margin(logits_list, family, config, ks):
    """Smallest distance of any routing decision from its threshold, over all tokens and layers.
    OLMoE: gaps between consecutive sorted softmax probabilities at ranks 1..max(ks).
    Phi-MoE: gaps between the top-3 logits (relative), and |ratio - 2 eps| of both sparsemixer masks."""
    m = float("inf")
    for lg in logits_list:
        lg = lg.float()
        if family == "olmoe":
            p = torch.softmax(lg, dim=-1).sort(dim=-1, descending=True).values
            k = max(ks)
            gaps = p[:, :k] - p[:, 1:k + 1]
            m = min(m, gaps.min().item())
        else:
            eps = config.router_jitter_noise
            s = lg.sort(dim=-1, descending=True).values
            scale = lg.abs().max().item()
            m = min(m, ((s[:, 0] - s[:, 1]) / scale).min().item(), ((s[:, 1] - s[:, 2]) / scale).min().item())
            m1, e1 = lg.max(dim=-1, keepdim=True)
            r1 = (m1 - lg) / lg.abs().clamp(min=m1)
            m = min(m, (r1 - 2 * eps).abs().min().item())
            masked = lg.scatter(-1, e1, float("-inf"))
            m2, e2 = masked.max(dim=-1, keepdim=True)
            r2 = (m2 - lg) / lg.abs().clamp(min=m2)
            r2 = r2.scatter(-1, e1, float("inf"))
            m = min(m, (r2 - 2 * eps).abs().min().item())
    return m


@contextlib.contextmanager
def capture_router_logits(model, family):
    out = []
    hooks = [mod.register_forward_hook(lambda mod, inp, o: out.append(o[0].detach().clone()))
             for mod in router_modules(model, family)]
    try:
        yield out
    finally:
        for h in hooks:
            h.remove()


# ---------------------------------------------------------------------------------------------------
# Reference forward passes (with the documented patches)

_orig_rope_forward = modeling_phimoe.PhimoeRotaryEmbedding.forward
_orig_router_forward = modeling_phimoe.PhimoeTopKRouter.forward


@torch.no_grad()
def _correct_longrope_forward(self, x, position_ids=None):
    """Phi-3/3.5 longrope as in the original code and transformers 4.57: for a call with
    seq_len = max(position_ids)+1 > original_max_position_embeddings use the LONG factors and long_mscale
    for every position, else the short factors and short_mscale. transformers 5.23 uses the short factors
    always (with long_mscale when long): see docs/oracle.md 1.4."""
    rp = self.config.rope_parameters
    if rp["rope_type"] == "default":
        return _orig_rope_forward(self, x, position_ids)
    seq_len = int(position_ids.max().item()) + 1
    is_long = seq_len > rp["original_max_position_embeddings"]
    inv_freq, _ = ROPE_INIT_FUNCTIONS["longrope"](self.config, x.device, seq_len=seq_len)
    mscale = rp["long_mscale"] if is_long else rp["short_mscale"]
    freqs = position_ids[..., None].float() * inv_freq.to(device=x.device, dtype=torch.float)
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * mscale).to(x.dtype), (emb.sin() * mscale).to(x.dtype)


def _top1_router_forward(self, hidden_states):
    """cemoe's Phi-MoE --top-k 1: the first sparsemixer choice with its unchanged multiplier w1.
    transformers has no such mode (sparsemixer always routes two): this truncation is the reference."""
    logits, weights, experts = _orig_router_forward(self, hidden_states)
    return logits, weights[:, :1], experts[:, :1]


@contextlib.contextmanager
def patched(rope=None, top1=False):
    try:
        if rope == "correct":
            modeling_phimoe.PhimoeRotaryEmbedding.forward = _correct_longrope_forward
        if top1:
            modeling_phimoe.PhimoeTopKRouter.forward = _top1_router_forward
        yield
    finally:
        modeling_phimoe.PhimoeRotaryEmbedding.forward = _orig_rope_forward
        modeling_phimoe.PhimoeTopKRouter.forward = _orig_router_forward


@contextlib.contextmanager
def reference_routing(model, family, topk=None, rope="correct"):
    """transformers' model as cemoe runs it at `topk` active experts (None: the config's): OLMoE's
    routers get top_k; Phi-MoE gets the corrected longrope and, at top-1, the first sparsemixer
    choice (see the patches above)."""
    if family == "olmoe":
        k0 = model.config.num_experts_per_tok
        for g in router_modules(model, family):
            g.top_k = topk or k0
        try:
            yield
        finally:
            for g in router_modules(model, family):
                g.top_k = k0
    else:
        with patched(rope=rope, top1=(topk == 1)):
            yield


@torch.no_grad()
def reference_logits(model, family, tokens, topk=None, rope="correct"):
    with reference_routing(model, family, topk=topk, rope=rope):
        return model(input_ids=tokens).logits.float()


def load_reference(folder, family):
    cls = FAMILY[family]["model_cls"]
    model, info = cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager",
                                      experts_implementation="eager", output_loading_info=True)
    model.eval()
    return model, info


def loading_problems(info):
    return {k: sorted(v) if isinstance(v, (set, list)) else v for k, v in info.items()
            if k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs") and v}


# ---------------------------------------------------------------------------------------------------
# Cases


def make_case_folder(family, case, folder, seed):
    fam = FAMILY[family]
    cfg = json.loads(json.dumps(fam["base"]))  # deep copy
    cfg.update(json.loads(json.dumps(case["cfg"])))
    ks = [k for k in case["topk"] if k] or [cfg["num_experts_per_tok"]]
    ks.append(cfg["num_experts_per_tok"])
    for attempt in range(40):
        s = seed + 1009 * attempt
        torch.manual_seed(s)
        config = fam["config_cls"](**json.loads(json.dumps(cfg)))
        model = fam["model_cls"](config)
        gen = torch.Generator().manual_seed(s)
        randomize(model, gen)
        if case["dtype"] == "bf16":
            model = model.to(torch.bfloat16)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        kw = {}
        if case["layout"] == "sharded":
            kw["max_shard_size"] = "20KB"
        if case["layout"] == "fused":
            kw["save_original_format"] = False
        model.save_pretrained(folder, safe_serialization=True, **kw)
        ref, info = load_reference(folder, family)
        probs = loading_problems(info)
        if probs:
            oc.fail(f"{family}/{case['name']}: transformers cannot reload its own folder: {probs}")
        tokens = {}
        margin = float("inf")
        tgen = torch.Generator().manual_seed(s + 1)
        for L in case["lens"]:
            tokens[L] = torch.randint(0, cfg["vocab_size"], (B, L), generator=tgen)
            for topk in (case["topk"] if family == "phimoe" else [None]):
                with capture_router_logits(ref, family) as lg:
                    reference_logits(ref, family, tokens[L], topk=topk)
                margin = min(margin, routing_margin(lg, family, ref.config, ks))
        if margin >= MARGIN:
            return ref, tokens, s, margin
    oc.fail(f"{family}/{case['name']}: no seed with routing margin >= {MARGIN} in 40 tries")


def write_tokens(path, tokens):
    with open(path, "w") as f:
        json.dump(tokens.tolist(), f)


def cemoe_logits(binary, folder, tokens, work, tag, topk=None, launcher=(), extra=()):
    tok_path = os.path.join(work, f"{tag}.tokens.json")
    out_path = os.path.join(work, f"{tag}.logits.safetensors")
    write_tokens(tok_path, tokens)
    if os.path.exists(out_path):
        os.remove(out_path)
    args = ["logits", "--model", folder, "--tokens", tok_path, "--out", out_path]
    if topk:
        args += ["--top-k", topk]
    _, dt = oc.run_cemoe(binary, args + list(extra), launcher=launcher)
    t = load_file(out_path)
    if "logits" not in t:
        oc.fail(f"{out_path} has no tensor 'logits' (has {sorted(t)})")
    return t["logits"], dt


def compare(report, case, got, want, **extra):
    if got.dtype != torch.float32 or tuple(got.shape) != tuple(want.shape):
        report.add(case, False, error=f"cemoe logits {got.dtype} {tuple(got.shape)}, "
                                      f"want float32 {tuple(want.shape)}", **extra)
        return
    scale = want.abs().max().item()
    diff = (got - want).abs().max().item()
    rel = diff / scale
    ok = bool(torch.isfinite(got).all()) and rel <= TOL
    report.add(case, ok, max_abs_diff=diff, scale=scale, rel=rel, **extra)


def run_case(binary, family, case, work, report):
    folder = os.path.join(work, case["name"])
    ref, tokens, seed, margin = make_case_folder(family, case, folder, seed=hash_seed(family, case["name"]))
    for L, tok in tokens.items():
        for topk in case["topk"]:
            tag = f"{case['name']}_S{L}_k{topk or 'cfg'}"
            want = reference_logits(ref, family, tok, topk=topk)
            got, dt = cemoe_logits(binary, folder, tok, work, tag, topk=topk)
            extra = dict(seed=seed, margin=margin, cemoe_s=round(dt, 2))
            if family == "phimoe" and L > PHI_OMP:
                # Information only: how far transformers 5.23's own (short-factor) longrope is.
                v5 = reference_logits(ref, family, tok, topk=topk, rope="v5")
                extra["v5_unpatched_rel"] = (got - v5).abs().max().item() / v5.abs().max().item()
            compare(report, tag, got, want, **extra)


def run_reverse(binary, family, work, report):
    """`cemoe init` -> from_pretrained: no missing/unexpected/mismatched keys, per-expert names, same logits."""
    folder = os.path.join(work, "cemoe_init")
    # cemoe's own random init routes with small margins (router std 0.02): take the first seed whose
    # routing margin on the test tokens is >= REVERSE_MARGIN, so float rounding cannot flip a choice.
    gen = torch.Generator().manual_seed(11)
    seed, tokens = None, None
    for seed in range(7, 17):
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        oc.run_cemoe(binary, ["init", "--arch", family, "--preset", "tiny", "--seed", seed, "--out", folder])
        try:
            ref, info = load_reference(folder, family)
        except Exception as e:  # noqa: BLE001
            report.error("reverse_init_load", f"from_pretrained failed on the cemoe init folder: {type(e).__name__}: {e}")
            return
        lens = [S_SHORT]
        if family == "phimoe":
            rp = ref.config.rope_parameters
            if rp.get("rope_type") == "longrope":
                lens.append(int(rp["original_max_position_embeddings"]) + 8)
        tokens = {L: torch.randint(0, ref.config.vocab_size, (B, L), generator=gen) for L in lens}
        margin = float("inf")
        for tok in tokens.values():
            with capture_router_logits(ref, family) as lg:
                reference_logits(ref, family, tok)
            margin = min(margin, routing_margin(lg, family, ref.config, [ref.config.num_experts_per_tok]))
        if margin >= REVERSE_MARGIN:
            break
    case = "reverse_init_load"
    probs = loading_problems(info)
    keys = []
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".safetensors"):
            with safe_open(os.path.join(folder, fn), "pt") as f:
                keys += list(f.keys())
    fused = [k for k in keys if "gate_up_proj" in k or k.endswith("experts.down_proj")]
    report.add(case, not probs and not fused and ref.config.model_type == family,
               loading=probs or "clean", fused_names=fused[:3], n_tensors=len(keys),
               model_type=ref.config.model_type, init_seed=seed)
    for L, tok in tokens.items():
        want = reference_logits(ref, family, tok)
        got, dt = cemoe_logits(binary, folder, tok, work, f"reverse_S{L}")
        compare(report, f"reverse_logits_S{L}", got, want, margin=margin, init_seed=seed, cemoe_s=round(dt, 2))
    return folder, ref, tokens


EP = 2  # both tiny presets have an even number of experts (OLMoE 8, Phi 4)


def run_expert_parallel(binary, family, work, report, mpiexec, ep_save, reverse):
    """Expert parallelism against transformers, on the `cemoe init` folder of run_reverse:
    `mpiexec -n 2 cemoe logits --ep 2` equals transformers' logits, and a folder saved by 2 ranks
    that each hold half of the experts (ep_save) loads in from_pretrained with no missing or
    unexpected keys, per-expert names by global id, and the same logits."""
    folder, ref, tokens = reverse
    mpi = [mpiexec, "--oversubscribe", "--allow-run-as-root", "-n", EP]
    wants = {L: reference_logits(ref, family, tok) for L, tok in tokens.items()}
    for L, tok in tokens.items():
        got, dt = cemoe_logits(binary, folder, tok, work, f"ep{EP}_S{L}", launcher=mpi,
                               extra=["--ep", EP, "--placement", "round_robin"])
        compare(report, f"ep{EP}_logits_S{L}", got, wants[L], cemoe_s=round(dt, 2))
    out = os.path.join(work, "ep_saved")
    if os.path.isdir(out):
        shutil.rmtree(out)
    p = subprocess.run([str(a) for a in mpi + [ep_save, folder, out, EP, "round_robin", 64 * 1024]],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    if p.returncode != 0:
        oc.fail(f"ep_save exited {p.returncode}:\n{p.stdout[-4000:]}")
    saved, info = load_reference(out, family)
    probs = loading_problems(info)
    shards = sorted(fn for fn in os.listdir(out) if fn.endswith(".safetensors"))
    keys = []
    for fn in shards:
        with safe_open(os.path.join(out, fn), "pt") as f:
            keys += list(f.keys())
    experts = sorted({int(k.split(".experts.")[1].split(".")[0]) for k in keys if ".experts." in k})
    report.add("ep_save_load", not probs and experts == list(range(getattr(ref.config, "num_experts", None) or ref.config.num_local_experts))
               and len(shards) > EP and os.path.isfile(os.path.join(out, "placement.json")),
               loading=probs or "clean", shards=len(shards), expert_ids=experts, n_tensors=len(keys))
    for L, tok in tokens.items():
        compare(report, f"ep_save_logits_S{L}", reference_logits(saved, family, tok), wants[L])


def hash_seed(family, name):
    h = 0
    for ch in f"{family}/{name}":
        h = (h * 131 + ord(ch)) % 1000003
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", required=True, choices=sorted(FAMILY))
    ap.add_argument("--cemoe", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--ep-save", required=True, help="tests/oracle/ep_save.cc")
    args = ap.parse_args()
    report = oc.start(f"model_parity_{args.family}", args.work, args.cemoe)
    oc.run_cases(report, [(c["name"], lambda c=c: run_case(args.cemoe, args.family, c, args.work, report))
                          for c in FAMILY[args.family]["cases"]], args.only)
    only = oc.selected(args.only)
    if not only or "reverse" in only:
        try:
            reverse = run_reverse(args.cemoe, args.family, args.work, report)
            if reverse:
                run_expert_parallel(args.cemoe, args.family, args.work, report, args.mpiexec,
                                    args.ep_save, reverse)
        except oc.Failure as e:
            report.error("reverse", str(e))
    return report.finish()


if __name__ == "__main__":
    oc.main_guard(main)
