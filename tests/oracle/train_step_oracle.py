"""Training-step oracle: one optimiser step of cemoe's trainer code against torch + transformers.

usage: train_step_oracle.py --family olmoe|phimoe --train-step BUILD/tests/oracle/train_step
                            --mpiexec MPIEXEC --work DIR [--only CASE[,CASE]]

For every case the script builds a tiny random float32 model with transformers' own classes (as
model_parity.py does), a batch of B rows (4, or the case's B) with a loss mask (row b masks its first
2b targets, so the ranks of a parallel run hold different numbers of loss tokens), and takes ONE step
both ways:
    loss = sum of token cross-entropies / number of loss tokens; backward;
    clip the global gradient norm to MAX_NORM; AdamW(LR, betas, EPS) with decoupled weight decay WD
    on every parameter except those whose name contains "norm" or "bias" (the recipe default
    optim.no_decay).
transformers' side: from_pretrained(float32, eager), eval mode (no dropout, no router or input
jitter, deterministic sparsemixer) with gradients on, torch.nn.utils.clip_grad_norm_ and
torch.optim.AdamW with two parameter groups. cemoe's side: tests/oracle/train_step.cc under
`mpiexec -n N` at expert-parallel size EP (N = EP: pure expert parallelism; N > EP: data parallel
replicas too), the rows split over the ranks, and the trainer's own code: SelectTrainable
(trainer/sft/trainable.h), ComputeGradients (trainer/sft/train_step.h: loss over the global token
count, gradients reduced by parallel/grad_sync.h, norm, clipping) and cemoe::AdamW
(trainer/sft/adamw.h). It writes its reduced gradients after clipping (what AdamW sees) and its
weights after the step as Hugging Face folders, loaded back here with from_pretrained (so names and
fused expert layouts come from transformers itself). Compared:
    loss                  |cemoe - torch| <= LOSS_TOL * |torch|
    gradient norm         |cemoe - torch| <= LOSS_TOL * torch        (before clipping)
    every gradient        max |cemoe - torch| <= GRAD_TOL * max |torch gradient of the model|
                          (both after clipping)
    every weight after    max |cemoe - torch| <= PARAM_STEP_TOL * LR + 4 eps32 * max |torch weight|
Seeds whose routing has a near-tie (model_parity.routing_margin) or leaves an expert without tokens
in some layer are rejected: an unused expert has no gradient in cemoe (AdamW skips it) but a zero
gradient in transformers' fused experts (AdamW decays it), which is a convention, not the math.
See docs/oracle.md section 5.
"""
import argparse
import json
import math
import os
import shutil
import subprocess

import torch
import torch.nn.functional as F

import model_parity as mp
import oracle_common as oc

B = 4
LR = 1e-3
WD = 0.1
BETAS = (0.9, 0.999)
EPS = 1e-6
MAX_NORM = 0.5          # below the models' gradient norms: clipping acts
NO_DECAY = ("norm", "bias")  # the recipe default optim.no_decay (trainer/config/run_config.h)
# Tolerances, relative to the scale of what they compare (tests/tolerance.h has the rule). The
# worst-case rule there (2 x terms summed x float32 eps x scale) gives ~2e-4 for these forward and
# backward chains (~700 terms each); the measured errors are 1e-7 to 1e-6 of the scale (docs/oracle.md
# section 5), so these tighter values keep a margin of 10 or more and still fail a 1e-4 error.
LOSS_TOL = 1e-5         # of |loss| (and of the gradient norm)
GRAD_TOL = 1e-5         # of the largest gradient of the model
# Weights after one AdamW step differ through the step, which moves a weight by at most about LR
# (lr g / (|g| + eps)); its sensitivity to a gradient difference dg is LR dg / eps <= 1e-6 for
# dg ~ 1e-9 (eps 1e-6, section 5). So: PARAM_STEP_TOL of the step, plus 4 float32 ulps of the
# tensor's scale for the rounding of the weight itself (w - lr wd w - step).
PARAM_STEP_TOL = 1e-2
EPS32 = 2.0 ** -23

# runs: (ranks, ep); ranks > ep adds data-parallel replicas.
CASES = {
    "olmoe": [
        dict(name="top2_of_4_gqa", cfg={}, topk=2, S=12, runs=[(1, 1), (2, 2), (2, 1), (4, 4), (4, 2)]),
        # 2 rows over 4 ranks: ranks 2 and 3 hold no rows and still join every all-to-all.
        dict(name="normtopk_clipqkv_tied", cfg=dict(norm_topk_prob=True, clip_qkv=0.8,
                                                    tie_word_embeddings=True, attention_bias=True),
             topk=None, S=12, B=2, runs=[(1, 1), (2, 2), (4, 4)]),
    ],
    "phimoe": [
        dict(name="top1_longrope_bias", cfg={}, topk=1, S=20, runs=[(1, 1), (2, 2)]),
        dict(name="top2_nobias_tied", cfg=dict(attention_bias=False, lm_head_bias=False,
                                               tie_word_embeddings=True, rope_scaling=None,
                                               router_jitter_noise=0.3),
             topk=None, S=12, runs=[(1, 1), (2, 2)]),
    ],
}


def num_experts(config):
    return getattr(config, "num_experts", None) or config.num_local_experts


def make_batch(vocab, rows, S, gen):
    seq = torch.randint(0, vocab, (rows, S + 1), generator=gen)
    tokens = seq[:, :S].contiguous()
    targets = seq[:, 1:].clone()
    for b in range(rows):
        targets[b, :2 * b] = -100
    return tokens, targets


def make_model(family, case, folder, seed):
    """A tiny random model folder and a batch whose routing is decisive and uses every expert."""
    fam = mp.FAMILY[family]
    cfg = json.loads(json.dumps(fam["base"]))
    cfg.update(json.loads(json.dumps(case["cfg"])))
    k = case["topk"] or cfg["num_experts_per_tok"]
    for attempt in range(40):
        s = seed + 1009 * attempt
        torch.manual_seed(s)
        model = fam["model_cls"](fam["config_cls"](**json.loads(json.dumps(cfg))))
        mp.randomize(model, torch.Generator().manual_seed(s))
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        model.save_pretrained(folder, safe_serialization=True)
        ref, info = mp.load_reference(folder, family)
        if mp.loading_problems(info):
            oc.fail(f"{family}/{case['name']}: transformers cannot reload its own folder: "
                    f"{mp.loading_problems(info)}")
        tokens, targets = make_batch(cfg["vocab_size"], case.get("B", B), case["S"],
                                     torch.Generator().manual_seed(s + 1))
        with mp.capture_router_logits(ref, family) as lg:
            mp.reference_logits(ref, family, tokens, topk=case["topk"])
        margin = mp.routing_margin(lg, family, ref.config, [k, cfg["num_experts_per_tok"]])
        used = min(len(torch.unique(x.float().topk(k, dim=-1).indices)) for x in lg)
        if margin >= mp.MARGIN and used == num_experts(ref.config):
            return tokens, targets, s, margin
    oc.fail(f"{family}/{case['name']}: no seed with routing margin >= {mp.MARGIN} that uses "
            f"every expert in 40 tries")


def reference_step(folder, family, tokens, targets, topk):
    model, _ = mp.load_reference(folder, family)
    with mp.reference_routing(model, family, topk=topk):
        logits = model(input_ids=tokens).logits.float()
    count = (targets != -100).sum()
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=-100, reduction="sum") / count
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM).item()
    # After clipping: cemoe's train_step writes the gradients AdamW sees.
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
             for n, p in model.named_parameters()}
    decay = [p for n, p in model.named_parameters() if not any(s in n for s in NO_DECAY)]
    no_decay = [p for n, p in model.named_parameters() if any(s in n for s in NO_DECAY)]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=WD), dict(params=no_decay, weight_decay=0.0)],
                            lr=LR, betas=BETAS, eps=EPS)
    opt.step()
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    return dict(loss=loss.item(), grad_norm=norm, grads=grads, after=after, loss_tokens=count.item())


def load_folder(folder, family, what):
    model, info = mp.load_reference(folder, family)
    probs = mp.loading_problems(info)
    if probs:
        oc.fail(f"cemoe's {what} folder {folder} does not load cleanly in from_pretrained: {probs}")
    return {n: p.detach() for n, p in model.named_parameters()}


def worst(got, want, scale=None, tol_of=None):
    """(max over tensors of max |got - want| [/ scale] [/ tol_of(tensor)], name of that tensor)."""
    if sorted(got) != sorted(want):
        oc.fail(f"parameter names differ: cemoe only {sorted(set(got) - set(want))}, "
                f"transformers only {sorted(set(want) - set(got))}")
    w, name = 0.0, ""
    for n, t in want.items():
        d = (got[n] - t).abs().max().item()
        if tol_of is not None:
            d /= tol_of(t)
        if not math.isfinite(d):
            return float("inf"), n
        if d > w:
            w, name = d, n
    return (w / scale if scale else w), name


def run_cemoe_step(args, folder, batch_path, out, ranks, ep, topk):
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    cmd = [args.mpiexec, "--oversubscribe", "--allow-run-as-root", "-n", ranks, args.train_step, folder,
           batch_path, out, ep, topk or 0, LR, WD, EPS, MAX_NORM]
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=300)
    if p.returncode != 0:
        oc.fail(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout[-4000:]}")
    with open(os.path.join(out, "result.json")) as f:
        return json.load(f)


def run_case(args, family, case, report):
    from safetensors.torch import save_file
    work = os.path.join(args.work, case["name"])
    os.makedirs(work, exist_ok=True)
    folder = os.path.join(work, "model")
    tokens, targets, seed, margin = make_model(family, case, folder, mp.hash_seed(family, case["name"]))
    batch_path = os.path.join(work, "batch.safetensors")
    save_file({"tokens": tokens, "targets": targets}, batch_path)
    ref = reference_step(folder, family, tokens, targets, case["topk"])
    gscale = max(g.abs().max().item() for g in ref["grads"].values())
    for ranks, ep in case["runs"]:
        tag = f"{case['name']}_n{ranks}_ep{ep}"
        try:
            out = os.path.join(work, f"n{ranks}_ep{ep}")
            res = run_cemoe_step(args, folder, batch_path, out, ranks, ep, case["topk"])
            grads = load_folder(os.path.join(out, "grads"), family, "gradients")
            after = load_folder(os.path.join(out, "after"), family, "after-step")
            loss_rel = abs(res["loss"] - ref["loss"]) / abs(ref["loss"])
            norm_rel = abs(res["grad_norm"] - ref["grad_norm"]) / ref["grad_norm"]
            grad_rel, grad_at = worst(grads, ref["grads"], gscale)
            param_abs, param_at = worst(after, ref["after"])
            param_rel, _ = worst(after, ref["after"], tol_of=lambda t: PARAM_STEP_TOL * LR
                                 + 4 * EPS32 * t.abs().max().item())
            ok = (loss_rel <= LOSS_TOL and norm_rel <= LOSS_TOL and grad_rel <= GRAD_TOL
                  and param_rel <= 1 and res["loss_tokens"] == ref["loss_tokens"]
                  and ref["grad_norm"] > MAX_NORM)
            report.add(tag, ok, loss=ref["loss"], loss_rel=loss_rel, grad_norm=ref["grad_norm"],
                       norm_rel=norm_rel, grad_rel=grad_rel, grad_worst=grad_at, param_abs=param_abs,
                       param_worst=param_at, param_of_tol=param_rel, dp=res["dp"], seed=seed, margin=margin)
        except oc.Failure as e:
            report.error(tag, str(e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", required=True, choices=sorted(CASES))
    ap.add_argument("--train-step", required=True, help="tests/oracle/train_step.cc")
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    report = oc.start(f"train_step_{args.family}", args.work, args.train_step)
    oc.run_cases(report, [(c["name"], lambda c=c: run_case(args, args.family, c, report))
                          for c in CASES[args.family]], args.only)
    return report.finish()


if __name__ == "__main__":
    oc.main_guard(main)
