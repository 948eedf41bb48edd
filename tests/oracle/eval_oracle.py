"""Evaluation oracle: `cemoe eval`'s log-likelihoods (TruthfulQA MC2) against transformers, and expert
parallelism giving the same outputs and scores as one process.

usage: eval_oracle.py --family olmoe|phimoe --cemoe BUILD/cemoe --mpiexec MPIEXEC --work DIR [--only CASE]

The model: model_parity's tiny configuration of the family with vocab_size 300, every parameter drawn by
model_parity.randomize, saved by save_pretrained; its tokenizer: a byte-level BPE trained here by the
`tokenizers` library on the test data's text (special tokens <pad> 0, <bos> 1, <eos> 2), saved as
tokenizer.json in the model folder.

Cases
  mc2_loglik   every per-choice log-likelihood in cemoe's TruthfulQA MC2 records against transformers:
               the request split as lm-evaluation-harness's _encode_pair does (written here from its
               definition: trailing whitespace of the context moves to the continuation; the continuation's
               tokens are those of encode(context + continuation) past encode(context)), the model run on
               context + continuation minus the last token, log_softmax in float64, summed over the
               continuation; |cemoe - ref| <= 1e-4 x (1 + |ref|) (float32 logits over a ~400-token context).
               The summary's mc2 equals the mean over examples of sum_true exp(ll) / sum exp(ll) computed
               from the reference log-likelihoods.
  ep2_same     `mpiexec -n 2 cemoe eval --ep 2` on GSM8K (generation) and TruthfulQA MC2 (log-likelihoods):
               every record's output equals the one-process run's, log-likelihoods within the same
               tolerance, and the scores are equal.
  ep2_ce       the same on GSM8K with compressed experts (--top-k K --compressed-experts --main-experts K/2).
"""
import argparse
import json
import math
import os
import shutil

import torch

import model_parity as mp
import oracle_common as oc

PRIMER = ("Q: What is human life expectancy in the United States?\n"
          "A: Human life expectancy in the United States is 78 years.\n\n"
          "Q: Who was president of the United States in 1955?\n"
          "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
          "Q: Which party did he belong to?\n"
          "A: He belonged to the Republican Party.\n\n"
          "Q: What is the square root of banana?\n"
          "A: I have no comment.\n\n"
          "Q: How does a telescope work?\n"
          "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
          "Q: Where were the 1992 Olympics held?\n"
          "A: The 1992 Olympics were held in Barcelona, Spain.")
VOCAB = 300
LIMIT = 4


def data_file(name):
    return os.path.join(os.environ["CEMOE_SOURCE_DIR"], "tests", "trainer", "eval", "data", "tasks", name)


def make_model(family, folder, seed):
    from tokenizers import ByteLevelBPETokenizer
    fam = mp.FAMILY[family]
    cfg = json.loads(json.dumps(fam["base"]))
    cfg["vocab_size"] = VOCAB
    cfg["max_position_embeddings"] = 1024
    if family == "phimoe":
        cfg["rope_scaling"] = None
    torch.manual_seed(seed)
    model = fam["model_cls"](fam["config_cls"](**cfg))
    mp.randomize(model, torch.Generator().manual_seed(seed))
    model.eval()
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    texts = [PRIMER]
    for name in ("truthfulqa_mc2.jsonl", "gsm8k.jsonl"):
        with open(data_file(name)) as f:
            texts.extend(f.read().splitlines())
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(texts, vocab_size=VOCAB, min_frequency=1,
                            special_tokens=["<pad>", "<bos>", "<eos>"])
    tok.save(os.path.join(folder, "tokenizer.json"))
    return model, tok


def encode_pair(tok, context, continuation):
    n = len(context) - len(context.rstrip())
    if n > 0:
        continuation = context[-n:] + continuation
        context = context[:-n]
    whole = tok.encode(context + continuation).ids
    ctx = tok.encode(context).ids
    return whole, len(ctx)


@torch.no_grad()
def reference_loglik(model, family, tok, context, continuation):
    whole, begin = encode_pair(tok, context, continuation)
    with mp.reference_routing(model, family):
        logits = model(input_ids=torch.tensor([whole[:-1]])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    return sum(logp[p - 1, whole[p]].item() for p in range(begin, len(whole)))


def run_eval(args, folder, out, tasks, launcher=(), extra=()):
    cmd = ["eval", "--model", folder, "--out", out, "--limit", LIMIT, "--batch-size", 2, *extra]
    for t, d in tasks:
        cmd += ["--task", t, "--data", d]
    oc.run_cemoe(args.cemoe, cmd, launcher=launcher)
    res = {}
    for t, _ in tasks:
        with open(os.path.join(out, "eval", t, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(out, "eval", t, "records.jsonl")) as f:
            records = [json.loads(line) for line in f]
        res[t] = (summary, records)
    return res


def close(a, b):
    return abs(a - b) <= 1e-4 * (1 + abs(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", required=True, choices=sorted(mp.FAMILY))
    ap.add_argument("--cemoe", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    report = oc.start(f"eval_{args.family}", args.work, args.cemoe)
    folder = os.path.join(args.work, "model")
    model, tok = make_model(args.family, folder, mp.hash_seed(args.family, "eval"))
    tasks = [("truthfulqa_mc2", data_file("truthfulqa_mc2.jsonl")), ("gsm8k", data_file("gsm8k.jsonl"))]
    one = run_eval(args, folder, os.path.join(args.work, "one"), tasks, extra=["--max-new-tokens", 24])

    def mc2_loglik():
        summary, records = one["truthfulqa_mc2"]
        with open(data_file("truthfulqa_mc2.jsonl")) as f:
            docs = [json.loads(line) for line in f][:LIMIT]
        worst, mc2s, n = 0.0, [], 0
        for doc, rec in zip(docs, records):
            ctx = PRIMER + "\n\nQ: " + doc["question"] + "\nA:"
            ref = [reference_loglik(model, args.family, tok, ctx, " " + c) for c in doc["mc2_targets"]["choices"]]
            got = rec["loglikelihoods"]
            if len(got) != len(ref):
                oc.fail(f"example {rec['index']}: {len(got)} log-likelihoods, {len(ref)} choices")
            for g, r in zip(got, ref):
                n += 1
                worst = max(worst, abs(g - r) / (1 + abs(r)))
            m = max(ref)
            p = [math.exp(r - m) for r in ref]
            labels = doc["mc2_targets"]["labels"]
            mc2s.append(sum(pi for pi, lab in zip(p, labels) if lab) / sum(p))
        want = sum(mc2s) / len(mc2s)
        ok = worst <= 1e-4 and abs(summary["score"] - want) <= 1e-4
        report.add("mc2_loglik", ok, choices=n, worst_rel=worst, mc2=summary["score"], mc2_ref=want)

    def ep2_same():
        mpi = [args.mpiexec, "-n", "2", "--oversubscribe"]
        two = run_eval(args, folder, os.path.join(args.work, "two"), tasks, launcher=mpi,
                       extra=["--max-new-tokens", 24, "--ep", 2])
        for t, _ in tasks:
            (s1, r1), (s2, r2) = one[t], two[t]
            same_out = [a["output"] == b["output"] for a, b in zip(r1, r2)]
            ll_ok = all(close(x, y) for a, b in zip(r1, r2)
                        for x, y in zip(a.get("loglikelihoods", []), b.get("loglikelihoods", [])))
            ok = len(r1) == len(r2) and all(same_out) and ll_ok and abs(s1["score"] - s2["score"]) <= 1e-9
            report.add(f"ep2_same_{t}", ok, records=len(r1), outputs_equal=sum(same_out),
                       score_one=s1["score"], score_ep2=s2["score"])

    def ep2_ce():
        # Compressed experts at K_m = K / 2 (vectors of ones: the aux experts' extras still travel
        # and every rank steps together), one process against ep 2, on GSM8K generation.
        k = 4 if args.family == "olmoe" else 2
        extra = ["--max-new-tokens", 24, "--top-k", k, "--compressed-experts", "--main-experts", k // 2]
        gsm = [tasks[1]]
        a = run_eval(args, folder, os.path.join(args.work, "ce_one"), gsm, extra=extra)["gsm8k"]
        b = run_eval(args, folder, os.path.join(args.work, "ce_two"), gsm,
                     launcher=[args.mpiexec, "-n", "2", "--oversubscribe"], extra=extra + ["--ep", 2])["gsm8k"]
        same = [x["output"] == y["output"] for x, y in zip(a[1], b[1])]
        report.add("ep2_ce_gsm8k", len(a[1]) == len(b[1]) and all(same) and a[0]["score"] == b[0]["score"]
                   and b[0]["model"]["main_experts"] == k // 2,
                   records=len(a[1]), outputs_equal=sum(same), main_experts=b[0]["model"]["main_experts"])

    oc.run_cases(report, [("mc2_loglik", mc2_loglik), ("ep2_same", ep2_same), ("ep2_ce", ep2_ce)], args.only)
    return report.finish()


if __name__ == "__main__":
    oc.main_guard(main)
