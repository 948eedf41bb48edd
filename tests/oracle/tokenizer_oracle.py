"""Tokenizer oracle: `cemoe tokenize` against the tokenizers library on tokenizer.json files that the
library's own trainers build.

usage: tokenizer_oracle.py --cemoe BUILD/cemoe --work DIR [--only CASE[,CASE]]

Cases (each trained here on a generated corpus, nothing downloaded):
    neox            GPT-NeoX / OLMoE style: byte-level BPE, NFC normalizer, ByteLevel pre-tokenizer
                    (add_prefix_space=False, GPT-2 regex), ByteLevel decoder.
    llama_prepend   Llama / Phi-3.5-MoE (older files): SentencePiece-style BPE with byte_fallback and
                    fuse_unk, <0x00>..<0xFF> in the vocabulary, normalizer Sequence[Prepend "▁",
                    Replace " "->"▁"], no pre-tokenizer, decoder Sequence[Replace, ByteFallback, Fuse,
                    Strip].
    llama_metaspace The same model with normalizer null and a Metaspace pre-tokenizer (replacement "▁",
                    prepend_scheme "first", split false), decoder Sequence[ByteFallback, Metaspace].
    llama_unk       llama_metaspace without byte_fallback: characters outside the vocabulary become
                    <unk>, consecutive ones fused into one (fuse_unk).
    llama3_split    A Sequence pre-tokenizer: Split (Llama-3 regex, Isolated), Digits
                    (individual_digits), ByteLevel (use_regex=False); Lowercase + NFKC normalizer.
Every case adds special tokens (some with lstrip / rstrip / single_word) and non-special added tokens
(normalized and not). For every string of the test set:
    cemoe tokenize ids            == Tokenizer.encode(s, add_special_tokens=False).ids
    cemoe tokenize --decode       == Tokenizer.decode(ids, skip_special_tokens=False)
    ... --skip-special-tokens     == Tokenizer.decode(ids, skip_special_tokens=True)
with one cemoe process per tokenizer and direction (batched through --input).
"""
import argparse
import json
import os
import random

import oracle_common as oc

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

# ---------------------------------------------------------------------------------------------------
# Corpus and test strings (deterministic).

WORDS = ["the", "model", "expert", "router", "token", "layer", "fine", "tune", "mixture", "of", "data",
         "hello", "world", "python", "return", "value", "über", "café", "naïve", "résumé", "Straße",
         "Ölfeld", "déjà", "vu", "日本語", "中文", "模型", "专家", "привет", "мир", "Γειά", "σου",
         "مرحبا", "بالعالم", "שלום", "עולם", "😀", "🚀", "👍🏽", "🇩🇪", "e\u0301te\u0301", "n\u0303o",
         "Å", "ﬁ", "①", "½", "Ⅻ", "İstanbul", "ΣΊΣΥΦΟΣ"]
CODE = ["def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "if x != None and y >= 3: print(f'{x:04d}')", "#include <vector>\nint main() { return 0; }",
        "SELECT id, name FROM users WHERE age > 30;", "x = [1, 2, 3]  # comment\n",
        "λx. x + 1 => {\"key\": \"value\"}", "a_b_c = foo.bar(baz)->qux[0];"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", " \t ", "\r\n", "    ", "\u3000", "\u00a0", "\u2003"]
NUMBERS = ["0", "7", "42", "1234", "3.14159", "1,000,000", "2024-06-01", "0x1F", "١٢٣", "12345678901"]


def gen_text(rng, n_items):
    parts = []
    for _ in range(n_items):
        r = rng.random()
        if r < 0.55:
            parts.append(rng.choice(WORDS))
        elif r < 0.7:
            parts.append(rng.choice(NUMBERS))
        elif r < 0.8:
            parts.append(rng.choice(CODE))
        else:
            parts.append(rng.choice([".", ",", "!", "?", "'s", "'ll", "--", "...", "(", ")", ":"]))
        parts.append(rng.choice(SPACES) if rng.random() < 0.25 else " ")
    return "".join(parts)


def corpus(seed=1, lines=1500):
    rng = random.Random(seed)
    return [gen_text(rng, rng.randint(3, 25)) for _ in range(lines)]


SPECIALS = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>", "<|sw|>", "<custom>", "[RAW]"]


def test_strings(seed=2, n=400):
    rng = random.Random(seed)
    fixed = [
        "", " ", "  ", "\n", "\t\t", "a", "Hello world", " Hello world", "Hello  world", "Hello world  ",
        "café", "cafe\u0301", "e\u0301", "日本語のテキスト", "😀😀 🚀", "مرحبا بالعالم", "שלום עולם",
        "1234567890", "3.14 and 2.71", "x  =\t1\n\ny = 2", "    indented\n        more",
        "<|endoftext|>", "<|endoftext|><|endoftext|>", "a<|endoftext|>b", " <|endoftext|> ",
        "<|user|>hi<|assistant|>hello<|end|>", "text   <|user|>   text", "x<|assistant|>   y",
        "  <|end|>  z", "<|sw|>", "a <|sw|> b", "a<|sw|>b", "word<|sw|> next", "<custom>", "a <custom> b",
        "a<custom>b", "[RAW]", " [RAW] x[RAW]y", "<|user|>", "<|us", "<|user|", "|user|>",
        "hello <|endoftext|> world", "İstanbul ΣΊΣΥΦΟΣ ﬁ ① ½ Ⅻ", "\u3000x\u00a0y\u2003z",
        "don't we'll they've I'm it's", "  leading spaces", "trailing spaces   ", "\r\nwindows\r\n",
        "▁already▁has▁meta", "mixed ▁ meta", "<0x41> literal byte token text", "emoji 👍🏽 flag 🇩🇪",
    ]
    out = list(fixed)
    while len(out) < n:
        s = gen_text(rng, rng.randint(1, 30))
        if rng.random() < 0.4:  # embed special tokens
            for _ in range(rng.randint(1, 3)):
                pos = rng.randint(0, len(s))
                tok = rng.choice(SPECIALS)
                pad_l = rng.choice(["", " ", "  ", "\n"])
                pad_r = rng.choice(["", " ", "  ", "\n"])
                s = s[:pos] + pad_l + tok + pad_r + s[pos:]
        out.append(s)
    return out


# ---------------------------------------------------------------------------------------------------
# Tokenizers, trained by the tokenizers library.

def add_tokens(tok):
    tok.add_special_tokens([
        AddedToken("<|endoftext|>", special=True, normalized=False),
        AddedToken("<|user|>", special=True, normalized=False, lstrip=True),
        AddedToken("<|assistant|>", special=True, normalized=False, rstrip=True),
        AddedToken("<|end|>", special=True, normalized=False, lstrip=True, rstrip=True),
        AddedToken("<|sw|>", special=True, normalized=False, single_word=True),
    ])
    tok.add_tokens([AddedToken("<custom>", special=False),                  # normalized (default)
                    AddedToken("[RAW]", special=False, normalized=False)])


def build_neox(texts):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    add_tokens(tok)
    return tok


def build_llama_model(texts):
    """Trains a SentencePiece-style BPE (words split at "▁") and lays its vocabulary out as Llama does:
    <unk> <s> </s>, then <0x00>..<0xFF>, then the trained tokens; limit_alphabet leaves rare characters
    to the byte fallback."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=700, limit_alphabet=70, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    trained = json.loads(tok.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for t, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    return vocab, merges


def llama_tokenizer(vocab, merges, variant):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>",
                               byte_fallback=variant != "unk", fuse_unk=True))
    if variant == "prepend":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence([decoders.ByteFallback(),
                                         decoders.Metaspace(replacement="▁", prepend_scheme="first")])
    tok.add_special_tokens([AddedToken("<unk>", special=True, normalized=False),
                            AddedToken("<s>", special=True, normalized=False),
                            AddedToken("</s>", special=True, normalized=False)])
    add_tokens(tok)
    return tok


LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def build_llama3_split(texts):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    add_tokens(tok)
    return tok


# ---------------------------------------------------------------------------------------------------

def run_case(cemoe, name, tok, strings, work, report):
    folder = os.path.join(work, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "tokenizer.json")
    tok.save(path)
    # The file as saved is what both sides read: reload it for the reference.
    ref = Tokenizer.from_file(path)
    with open(os.path.join(folder, "strings.json"), "w") as f:
        json.dump(strings, f, ensure_ascii=False)
    out_ids = os.path.join(folder, "ids.json")
    _, dt = oc.run_cemoe(cemoe, ["tokenize", "--tokenizer", folder, "--input",
                                 os.path.join(folder, "strings.json"), "--out", out_ids])
    with open(out_ids) as f:
        got = json.load(f)
    if len(got) != len(strings):
        oc.fail(f"{name}: cemoe returned {len(got)} id lists for {len(strings)} strings")
    want = [ref.encode(s, add_special_tokens=False).ids for s in strings]
    bad = [i for i in range(len(strings)) if got[i] != want[i]]
    tokens = sum(len(w) for w in want)
    for i in bad[:5]:
        print(f"  {name}: string {i} {strings[i]!r}\n    cemoe {got[i]}\n    hf    {want[i]}\n"
              f"    hf tokens {ref.encode(strings[i], add_special_tokens=False).tokens}", flush=True)
    report.add(f"{name}/encode", not bad, strings=len(strings), tokens=tokens, mismatches=len(bad),
               cemoe_s=dt)
    # Decode the reference ids both ways.
    ids_path = os.path.join(folder, "ref_ids.json")
    with open(ids_path, "w") as f:
        json.dump(want, f)
    for skip in (False, True):
        out_text = os.path.join(folder, f"decoded_skip{int(skip)}.json")
        args = ["tokenize", "--tokenizer", path, "--decode", "--input", ids_path, "--out", out_text]
        if skip:
            args.append("--skip-special-tokens")
        oc.run_cemoe(cemoe, args)
        with open(out_text) as f:
            got_text = json.load(f)
        want_text = [ref.decode(w, skip_special_tokens=skip) for w in want]
        bad_d = [i for i in range(len(want)) if got_text[i] != want_text[i]]
        for i in bad_d[:5]:
            print(f"  {name}: decode(skip={skip}) of string {i}\n    cemoe {got_text[i]!r}\n"
                  f"    hf    {want_text[i]!r}", flush=True)
        report.add(f"{name}/decode_skip_special_{skip}", not bad_d, strings=len(want), mismatches=len(bad_d))
    return len(strings), tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cemoe", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    report = oc.start("tokenizer", args.work, args.cemoe)
    texts = corpus()
    strings = test_strings()
    builders = {
        "neox": lambda: build_neox(texts),
        "llama_prepend": lambda: llama_tokenizer(*build_llama_model(texts), "prepend"),
        "llama_metaspace": lambda: llama_tokenizer(*build_llama_model(texts), "metaspace"),
        "llama_unk": lambda: llama_tokenizer(*build_llama_model(texts), "unk"),
        "llama3_split": lambda: build_llama3_split(texts),
    }
    done = oc.run_cases(report, [(name, lambda name=name, build=build: run_case(
        args.cemoe, name, build(), strings, args.work, report)) for name, build in builders.items()],
        args.only)
    total_strings = sum(n for n, _ in done.values())
    total_tokens = sum(t for _, t in done.values())
    print(f"tokenizer oracle: {total_strings} strings and {total_tokens} tokens compared "
          f"(encode, plus decode with and without special tokens)", flush=True)
    return report.finish()


if __name__ == "__main__":
    oc.main_guard(main)
