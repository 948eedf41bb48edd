"""latency_peer.py: the transformers side of `cemoe bench latency` (trainer/cli/bench_latency.cc).

The same measurement written the ordinary way: the model (a folder's weights with --model, or random
weights of a config.json cemoe wrote with --config: the same shapes), float32 eager, eval mode, on BATCH
random prompts of INPUT_LEN tokens; one iteration = model.generate(do_sample=False,
min_new_tokens=NEW_TOKENS, max_new_tokens=NEW_TOKENS) with the KV cache (so exactly NEW_TOKENS tokens,
as cemoe ignores EOS); WARMUP untimed rounds then ITERS timed ones, each round running every top-k
once (interleaved as cemoe does). OLMoE's top-k is set on every router (gate.top_k); Phi-MoE's
sparsemixer always routes 2, so only its own k is measured. Progress goes to stderr; the last stdout
line is one JSON object. Nothing is downloaded.
  ~/.cache/cemoe/oracle-venv/bin/python launch/bench/latency_peer.py --config DIR/config.json ...
"""
import argparse
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

transformers.logging.set_verbosity_error()


def log(msg):
    print(f"[latency_peer] {msg}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config")
    src.add_argument("--model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--input-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--top-k", default="", help="comma list (OLMoE); empty = the config's")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.model:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32,
                                                     attn_implementation="eager",
                                                     experts_implementation="eager")
    else:
        config = AutoConfig.from_pretrained(os.path.dirname(os.path.abspath(args.config)))
        config._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    cfg = model.config
    olmoe = cfg.model_type == "olmoe"
    ks = [int(k) for k in args.top_k.split(",") if k] or [cfg.num_experts_per_tok]
    if not olmoe:
        ks = [cfg.num_experts_per_tok]
    gen = torch.Generator().manual_seed(args.seed + 1)
    prompts = torch.randint(cfg.vocab_size, (args.batch, args.input_len), generator=gen)
    mask = torch.ones_like(prompts)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0

    def run(k):
        if olmoe:
            for layer in model.model.layers:
                layer.mlp.gate.top_k = k
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=prompts, attention_mask=mask, do_sample=False,
                                 min_new_tokens=args.new_tokens, max_new_tokens=args.new_tokens,
                                 pad_token_id=pad)
        dt = time.perf_counter() - t0
        assert out.shape[1] == args.input_len + args.new_tokens, out.shape
        return dt

    for i in range(args.warmup):
        for k in ks:
            run(k)
        log(f"warm-up round {i + 1}/{args.warmup}")
    times = {k: [] for k in ks}
    for i in range(args.iters):
        for k in ks:
            times[k].append(run(k))
        log(f"round {i + 1}/{args.iters}: " + ", ".join(f"top-{k} {times[k][-1]:.3f} s" for k in ks))
    results = [{"top_k": k, "mean_s": statistics.fmean(t),
                "std_s": statistics.stdev(t) if len(t) > 1 else 0.0, "times_s": t}
               for k, t in times.items()]
    print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "model_type": cfg.model_type,
                      "results": results}))


if __name__ == "__main__":
    main()
