"""Generation oracle: `cemoe generate` (greedy, KV cache) against transformers' generate(do_sample=False),
token for token, on tiny OLMoE and Phi-MoE models.

usage: generate_oracle.py --family olmoe|phimoe --cemoe BUILD/cemoe --mpiexec MPIEXEC --work DIR [--only CASE]

The model: model_parity's tiny configuration of the family, every parameter drawn by model_parity.randomize
(decisive routers), saved by save_pretrained (with its generation_config.json: eos_token_id 2). Prompts are
random token ids of different lengths (no EOS inside), given to cemoe as {"prompt_ids": [...]} lines.

The reference: transformers' generate(do_sample=False, max_new_tokens=N) on the same batches cemoe runs
(consecutive chunks of --batch-size prompts, left-padded with their attention_mask; chunks of 1 are
unpadded). OLMoE: the batched reference must also equal the one-prompt-at-a-time reference (a check of the
reference itself). Phi-MoE runs model_parity's corrected longrope (the factors of max(position)+1 per
call, as the original code and cemoe do; transformers 5.23 keeps the short factors, docs/oracle.md 1.4);
prompts and completions cross original_max_position_embeddings (16), where transformers' generation
drops its KV cache and recomputes every position with the long factors, and so does cemoe. The switch
follows the longest row of a batch, so Phi-MoE's completions legitimately depend on the batch
composition: each cemoe run is compared with the reference on the same chunks. OLMoE also runs at top-k 2
(the routers' top_k set as model_parity does).
A seed is rejected when, at some step of the reference, the top-2 logits of a row are closer than
MARGIN x the logits' scale (float32 summation order could then flip the argmax honestly).

Cases: cemoe at batch size 1, 2 and 4 (padded batches), left and right padding, and under
`mpiexec -n 2 ... --ep 2` (experts split over two ranks, prompts split over the ranks; also one prompt
alone, so that rank 1 has no rows and still takes part in every forward): every completion
must equal the reference's tokens exactly, and its finish reason must match (eos when the reference
stopped at EOS before N tokens, else length).
"""
import argparse
import json
import os

import torch

import model_parity as mp
import oracle_common as oc

N_NEW = 12
LENS = [5, 11, 3, 8]
MARGIN = 1e-3
EOS = 2


def make_model(family, folder, seed, topk):
    fam = mp.FAMILY[family]
    cfg = json.loads(json.dumps(fam["base"]))
    for attempt in range(40):
        s = seed + 7919 * attempt
        torch.manual_seed(s)
        model = fam["model_cls"](fam["config_cls"](**json.loads(json.dumps(cfg))))
        mp.randomize(model, torch.Generator().manual_seed(s))
        model.eval()
        gen = torch.Generator().manual_seed(s + 1)
        prompts = []
        for L in LENS:
            ids = torch.randint(3, cfg["vocab_size"], (L,), generator=gen).tolist()
            prompts.append(ids)
        refs = {}
        ok = True
        for k in topk:
            for bs in (1, 2, 4):
                got, margin = reference_chunks(model, family, prompts, k, bs)
                if margin < MARGIN:
                    ok = False
                    break
                refs[(k, bs)] = got
            if not ok:
                break
        if not ok:
            continue
        if os.path.isdir(folder):
            import shutil
            shutil.rmtree(folder)
        model.save_pretrained(folder, safe_serialization=True)
        return model, prompts, refs, s
    oc.fail(f"{family}: no seed with a greedy margin >= {MARGIN} in 40 tries")


@torch.no_grad()
def reference_chunks(model, family, prompts, topk, bs):
    """transformers' greedy completions of `prompts` in consecutive chunks of `bs` (left-padded), and
    the smallest top-1/top-2 logit gap of any unfinished row at any step, relative to the logits' scale."""
    out, margin = [], float("inf")
    with mp.reference_routing(model, family, topk=topk):
        for c in range(0, len(prompts), bs):
            chunk = prompts[c:c + bs]
            S = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), S), 1, dtype=torch.long)
            mask = torch.zeros((len(chunk), S), dtype=torch.long)
            for i, p in enumerate(chunk):
                ids[i, S - len(p):] = torch.tensor(p)
                mask[i, S - len(p):] = 1
            r = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=N_NEW,
                               eos_token_id=EOS, pad_token_id=1, output_scores=True,
                               return_dict_in_generate=True)
            done = [False] * len(chunk)
            for step, sc in enumerate(r.scores):
                for i in range(len(chunk)):
                    if done[i]:
                        continue
                    top = sc[i].float().topk(2).values
                    scale = sc[i].abs().max().item()
                    margin = min(margin, (top[0] - top[1]).item() / max(scale, 1e-6))
                    if r.sequences[i, S + step].item() == EOS:
                        done[i] = True
            out.extend(strip(r.sequences[i, S:].tolist()) for i in range(len(chunk)))
    return out, margin


def strip(new):
    """transformers' sequence after the prompt: tokens up to EOS (exclusive); pads after EOS dropped."""
    toks, reason = [], "length"
    for t in new:
        if t == EOS:
            reason = "eos"
            break
        toks.append(t)
    return toks, reason


def run_cemoe(args, folder, prompts, tag, extra=(), launcher=()):
    inp = os.path.join(args.work, f"{tag}.in.jsonl")
    out = os.path.join(args.work, f"{tag}.out.jsonl")
    with open(inp, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt_ids": p}) + "\n")
    oc.run_cemoe(args.cemoe, ["generate", "--model", folder, "--input", inp, "--output", out,
                              "--max-new-tokens", N_NEW, *extra], launcher=launcher)
    with open(out) as f:
        rows = [json.loads(line) for line in f]
    return [(r["completion_ids"], r["finish_reason"]) for r in rows]


def compare(report, case, got, want):
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if tuple(g[0]) != tuple(w[0]) or g[1] != w[1]]
    ok = len(got) == len(want) and not bad
    detail = {}
    if bad:
        i = bad[0]
        detail = dict(row=i, cemoe=got[i], transformers=want[i])
    report.add(case, ok, rows=len(want), tokens=sum(len(w[0]) for w in want), **detail)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", required=True, choices=sorted(mp.FAMILY))
    ap.add_argument("--cemoe", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    report = oc.start(f"generate_{args.family}", args.work, args.cemoe)
    folder = os.path.join(args.work, "model")
    topks = [None, 2] if args.family == "olmoe" else [None]
    model, prompts, refs, seed = make_model(args.family, folder, mp.hash_seed(args.family, "generate"), topks)
    print(f"seed {seed}; reference completions (batch 1): {refs[(None, 1)]}", flush=True)
    mpi = [args.mpiexec, "-n", "2", "--oversubscribe"]

    def case(name, fn):
        return (name, fn)

    cases = []
    if args.family == "olmoe":
        cases.append(case("reference_batched_left", lambda: compare(report, "reference_batched_left",
                                                                    refs[(None, 4)], refs[(None, 1)])))
    for bs in (1, 2, 4):
        for pad in ("left", "right"):
            name = f"batch{bs}_{pad}"
            cases.append(case(name, lambda bs=bs, pad=pad, name=name: compare(
                report, name, run_cemoe(args, folder, prompts, name, ["--batch-size", bs, "--padding", pad]),
                refs[(None, bs)])))
    # Two ranks, two prompts each: rank r runs chunk r, as the bs = 2 reference.
    cases.append(case("ep2_batch2", lambda: compare(
        report, "ep2_batch2", run_cemoe(args, folder, prompts, "ep2", ["--batch-size", 2, "--ep", 2], mpi),
        refs[(None, 2)])))
    # One prompt on two ranks: rank 1 has no rows yet steps with rank 0 (every forward's all-to-alls).
    cases.append(case("ep2_idle_rank", lambda: compare(
        report, "ep2_idle_rank", run_cemoe(args, folder, prompts[:1], "ep2_idle", ["--ep", 2], mpi),
        refs[(None, 1)][:1])))
    if args.family == "olmoe":
        cases.append(case("top2_batch4", lambda: compare(
            report, "top2_batch4", run_cemoe(args, folder, prompts, "top2", ["--batch-size", 4, "--top-k", 2]),
            refs[(2, 4)])))
    oc.run_cases(report, cases, args.only)
    return report.finish()


if __name__ == "__main__":
    oc.main_guard(main)
