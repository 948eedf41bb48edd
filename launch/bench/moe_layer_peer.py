"""moe_layer_peer.py: the transformers side of `cemoe bench moe-layer` (trainer/cli/bench_moe_layer.cc).

One MoE block of transformers itself (OlmoeSparseMoeBlock or PhimoeSparseMoeBlock) at the shape cemoe
measured: EXPERTS experts of hidden HIDDEN and intermediate INTERMEDIATE, top-k TOP_K, TOKENS tokens,
float32 (or bfloat16), THREADS intra-op threads, weights normal(0, 0.02) (router included), grad
enabled, eval mode (no input jitter; Phi-MoE's sparsemixer then routes deterministically).
Phi-MoE's sparsemixer routes exactly 2 experts, so at another top-k the OLMoE block (softmax top-k
router, the same SwiGLU experts) stands in at Phi-MoE's shape; the result says which block ran.
For each experts implementation asked for (transformers 5.x `config._experts_implementation`:
eager = the per-expert loop over the 3-D gate_up_proj [E, 2I, H] / down_proj [E, H, I];
grouped_mm = torch's grouped matmul; batched_mm = one bmm per routed row over gathered weights,
skipped when the gather would exceed --max-gather-gib) it runs WARMUP untimed and REPS timed steps
of forward + backward(grad_out), in two modes: gradients released before every step ("fresh", what
cemoe's trainer does) and kept and accumulated ("kept"). The eager loop is 10-30x slower than
grouped_mm at the benchmark's shapes (a minute a step at OLMoE's), so it runs --eager-reps timed
steps (default 1) without warm-up, gradients released only.
Progress goes to stderr; the last stdout line is one JSON object. Nothing is downloaded.
By hand:  ~/.cache/cemoe/oracle-venv/bin/python launch/bench/moe_layer_peer.py --arch olmoe ...
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


def log(msg):
    print(f"[moe_layer_peer] {msg}", file=sys.stderr, flush=True)


def build_block(args, dtype):
    """The block and the name of its class."""
    common = dict(hidden_size=args.hidden, intermediate_size=args.intermediate,
                  num_experts_per_tok=args.top_k, num_hidden_layers=1, num_attention_heads=1,
                  num_key_value_heads=1, vocab_size=60000)
    if args.arch == "phimoe" and args.top_k == 2:
        from transformers.models.phimoe.configuration_phimoe import PhimoeConfig
        from transformers.models.phimoe.modeling_phimoe import PhimoeSparseMoeBlock
        config = PhimoeConfig(num_local_experts=args.experts, input_jitter_noise=0.0, **common)
        cls = PhimoeSparseMoeBlock
    else:
        from transformers.models.olmoe.configuration_olmoe import OlmoeConfig
        from transformers.models.olmoe.modeling_olmoe import OlmoeSparseMoeBlock
        config = OlmoeConfig(num_experts=args.experts, norm_topk_prob=False, **common)
        cls = OlmoeSparseMoeBlock
    torch.manual_seed(0)
    block = cls(config)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0.0, 0.02)
    return block.to(dtype).eval(), config, cls.__name__


def gather_gib(args, dtype):
    rows = args.tokens * args.top_k
    return rows * 3 * args.intermediate * args.hidden * torch.finfo(dtype).bits / 8 / 2**30


def measure(args, impl, dtype):
    block, config, block_name = build_block(args, dtype)
    config._experts_implementation = None if impl == "eager" else impl
    # The experts module reads the implementation from its own config at forward.
    block.experts.config._experts_implementation = config._experts_implementation
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, args.tokens, args.hidden, generator=gen).to(dtype).requires_grad_(True)
    grad_out = torch.randn(1, args.tokens, args.hidden, generator=gen).to(dtype)
    params = list(block.parameters()) + [x]

    def step(keep):
        if not keep:
            for p in params:
                p.grad = None
        y = block(x)
        y.backward(grad_out)

    out = {"impl": impl, "block": block_name}
    eager = impl == "eager"
    for mode in ("fresh",) if eager else ("fresh", "kept"):
        keep = mode == "kept"
        for _ in range(0 if eager else args.warmup):
            step(keep)
        times = []
        for _ in range(args.eager_reps if eager else args.reps):
            t0 = time.perf_counter()
            step(keep)
            times.append(time.perf_counter() - t0)
        out[f"{mode}_median_ms"] = statistics.median(times) * 1e3
        out[f"{mode}_min_ms"] = min(times) * 1e3
        log(f"{impl} {mode}: median {out[f'{mode}_median_ms']:.1f} ms, min {out[f'{mode}_min_ms']:.1f} ms")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["olmoe", "phimoe"], required=True)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--intermediate", type=int, required=True)
    ap.add_argument("--experts", type=int, required=True)
    ap.add_argument("--top-k", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--eager-reps", type=int, default=1)
    ap.add_argument("--impl", default="all", help="all, or a comma-separated list of eager, grouped_mm, batched_mm")
    ap.add_argument("--max-gather-gib", type=float, default=8.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.float32 if args.dtype == "float32" else torch.bfloat16
    impls = ["eager", "grouped_mm", "batched_mm"] if args.impl == "all" else args.impl.split(",")
    results = []
    for impl in impls:
        if impl == "batched_mm" and gather_gib(args, dtype) > args.max_gather_gib:
            gib = gather_gib(args, dtype)
            log(f"batched_mm skipped: its gathered weights would take {gib:.1f} GiB")
            results.append({"impl": impl, "skipped": f"gather {gib:.1f} GiB > --max-gather-gib"})
            continue
        log(f"measuring {impl}")
        results.append(measure(args, impl, dtype))
    print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "mkl": torch.backends.mkl.is_available(),
                      "results": results}))


if __name__ == "__main__":
    main()
