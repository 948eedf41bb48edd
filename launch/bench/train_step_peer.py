"""train_step_peer.py: the transformers side of `cemoe bench train-step` (trainer/cli/bench_train_step.cc).

The same SFT step as cemoe's, written the ordinary way with torch + transformers: OlmoeForCausalLM
built from CONFIG (a config.json cemoe wrote: the same shapes and top-k), float32, train mode
(OLMoE has no jitter; dropout 0), random init; a batch of uniform random tokens (MICRO_BATCHES x
ROWS x SEQ, next-token loss through labels=input_ids, the router load-balancing loss at the config's
coefficient as cemoe adds it), backward, clip_grad_norm_(1.0), torch.optim.AdamW(lr, betas (0.9,
0.999), eps 1e-8, weight_decay on every parameter), gradients set to None.
For each experts implementation asked for (transformers 5.x `experts_implementation`: eager = the
per-expert loop, grouped_mm = torch grouped matmul, batched_mm = one bmm per routed row over gathered
weights) it builds a fresh model, runs WARMUP untimed steps and REPS timed ones, and reports the
median step and its parts. batched_mm is skipped when its gathered weights would exceed
--max-gather-gib (it materialises [tokens x top_k, 3 x intermediate x hidden] floats per layer).
Progress goes to stderr; the last stdout line is one JSON object. Nothing is downloaded.
Run by cemoe with the oracle environment's python; by hand:
  ~/.cache/cemoe/oracle-venv/bin/python launch/bench/train_step_peer.py --config DIR/config.json ...
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402


def log(msg):
    print(f"[train_step_peer] {msg}", file=sys.stderr, flush=True)


def gather_gib(config, tokens):
    rows = tokens * config.num_experts_per_tok
    return rows * 3 * config.intermediate_size * config.hidden_size * 4 / 2**30


def measure(args, config, impl, batches):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, experts_implementation=impl)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=args.weight_decay)
    micro = len(batches)

    def step():
        t0 = time.perf_counter()
        loss_sum = 0.0
        for tokens in batches:
            out = model(input_ids=tokens, labels=tokens, output_router_logits=True)
            (out.loss / micro).backward()
            loss_sum += out.loss.item() / micro
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        return {"step_s": t3 - t0, "fwd_bwd_s": t1 - t0, "clip_s": t2 - t1, "opt_s": t3 - t2,
                "loss": loss_sum}

    for i in range(args.warmup):
        log(f"{impl}: warm-up step {i + 1}/{args.warmup}")
        step()
    runs = []
    for i in range(args.reps):
        runs.append(step())
        log(f"{impl}: step {i + 1}/{args.reps}: {runs[-1]['step_s'] * 1e3:.1f} ms")
    median = sorted(runs, key=lambda r: r["step_s"])[len(runs) // 2]
    tokens = sum(b.numel() for b in batches)
    result = {"impl": impl, "attention": model.config._attn_implementation, **median,
              "tokens_per_s": tokens / median["step_s"],
              "all_step_s": [r["step_s"] for r in runs]}
    del model, opt, params
    gc.collect()
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--micro-batches", type=int, default=1)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--impl", default="all", choices=["all", "eager", "grouped_mm", "batched_mm"])
    ap.add_argument("--max-gather-gib", type=float, default=8.0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    config = AutoConfig.from_pretrained(os.path.dirname(os.path.abspath(args.config)))
    gen = torch.Generator().manual_seed(1000)
    batches = [torch.randint(config.vocab_size, (args.rows, args.seq), generator=gen)
               for _ in range(args.micro_batches)]
    tokens = args.rows * args.seq * args.micro_batches
    impls = ["eager", "grouped_mm", "batched_mm"] if args.impl == "all" else [args.impl]
    results = []
    attention = "?"
    for impl in impls:
        if impl == "batched_mm":
            gib = gather_gib(config, args.rows * args.seq)
            if gib > args.max_gather_gib:
                results.append({"impl": impl, "skipped": f"would gather {gib:.1f} GiB of expert "
                                f"weights per layer (over --max-gather-gib {args.max_gather_gib:g})"})
                continue
        r = measure(args, config, impl, batches)
        attention = r.pop("attention")
        results.append(r)
    print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "attention": attention,
                      "tokens": tokens, "results": results}))


if __name__ == "__main__":
    main()
