#!/usr/bin/env python3
"""launch/tiny/train_tokenizer.py: the byte-level BPE tokenizer of the tiny default models.

Trained by the Hugging Face tokenizers library (the oracle environment, launch/oracle_env.sh) on
the pretraining corpus that `cemoe data synth` writes (pretrain.jsonl, the "text" field of every
line, in file order), so it is reproducible from the synth seed. Writes a tokenizer folder:
tokenizer.json, tokenizer_config.json (ChatML chat template, eos <|endoftext|>),
special_tokens_map.json and generation_config.json (generation stops at <|im_end|> or
<|endoftext|>).

  usage: python3 launch/tiny/train_tokenizer.py --corpus DIR/pretrain.jsonl --out DIR [--vocab 2048]
"""
import argparse
import json
import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SPECIALS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for message in messages %}"
          "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
          "{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=2048)
    args = ap.parse_args()

    def texts():
        with open(args.corpus, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)["text"]

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=args.vocab, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts(), trainer)
    os.makedirs(args.out, exist_ok=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in SPECIALS}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|pad|>",
        "unk_token": None,
        "model_max_length": 512,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHATML,
    }
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "special_tokens_map.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "pad_token": "<|pad|>",
                   "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
                   "pad_token_id": ids["<|pad|>"]}, f, indent=2)
        f.write("\n")
    print(f"train_tokenizer: {tok.get_vocab_size()} tokens -> {args.out}; specials {ids}")


if __name__ == "__main__":
    main()
