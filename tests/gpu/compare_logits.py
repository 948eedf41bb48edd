"""GPU parity: `cemoe logits --device cuda` against transformers on the same GPU, tiny random
models of both families made by transformers itself (run by launch/gpu_check.sh on a GPU machine;
CI has no GPU). Prints one line per case with the max |diff| relative to the logits' scale."""
import argparse, json, os, subprocess, sys, tempfile

import torch
import transformers
from safetensors.torch import load_file


def make(family, d):
    if family == "olmoe":
        cfg = transformers.OlmoeConfig(vocab_size=128, hidden_size=64, intermediate_size=32,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, num_experts=8, num_experts_per_tok=4,
                                       clip_qkv=2.0, norm_topk_prob=True, max_position_embeddings=256)
        m = transformers.OlmoeForCausalLM(cfg)
    else:
        cfg = transformers.PhimoeConfig(vocab_size=128, hidden_size=64, intermediate_size=96,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, num_local_experts=4,
                                        num_experts_per_tok=2, attention_bias=True,
                                        lm_head_bias=True, max_position_embeddings=256,
                                        rope_scaling={"type": "longrope", "rope_type": "longrope",
                                                      "short_factor": [1.0 + 0.01 * i for i in range(8)],
                                                      "long_factor": [1.0 + 0.25 * i for i in range(8)],
                                                      "short_mscale": 1.1, "long_mscale": 1.1,
                                                      "original_max_position_embeddings": 64})
        m = transformers.PhimoeForCausalLM(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.1)
    m.save_pretrained(d)
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cemoe", required=True)
    args = ap.parse_args()
    worst = 0.0
    print(f"transformers {transformers.__version__} torch {torch.__version__} "
          f"device {torch.cuda.get_device_name(0)}")
    for family in ["olmoe", "phimoe"]:
        with tempfile.TemporaryDirectory() as d:
            m = make(family, d)
            kw = {"attn_implementation": "eager"}
            ref_model = type(m).from_pretrained(d, dtype=torch.float32, **kw).cuda().eval()
            g = torch.Generator().manual_seed(1)
            tokens = torch.randint(0, 128, (3, 40), generator=g)
            json.dump(tokens.tolist(), open(os.path.join(d, "t.json"), "w"))
            out = os.path.join(d, "l.safetensors")
            subprocess.run([args.cemoe, "logits", "--model", d, "--tokens",
                            os.path.join(d, "t.json"), "--out", out, "--device", "cuda"],
                           check=True, stdout=subprocess.DEVNULL)
            ours = load_file(out)["logits"]
            with torch.no_grad():
                ref = ref_model(tokens.cuda()).logits.float().cpu()
            rel = ((ours - ref).abs().max() / ref.abs().max()).item()
            worst = max(worst, rel)
            print(f"gpu parity {family}: max|diff| {(ours - ref).abs().max().item():.3e} "
                  f"scale {ref.abs().max().item():.3e} relative {rel:.3e}")
    # Relative to the logits' scale, as tests/oracle/model_parity.py (TOL there has the reasoning).
    print("gpu parity:", "PASS" if worst < 1e-4 else "FAIL")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
