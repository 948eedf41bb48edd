// tokenizer_fuzz.cc: libFuzzer harness for cemoe::Tokenizer (trainer/tokenizer/tokenizer.h): loading a
// tokenizer.json, Encode and Decode. tokenizer.json files and the texts to encode are user input.
//
// The first input byte picks the mode (byte % 4); the rest is:
//  0. a tokenizer.json text, loaded with Tokenizer::FromJson. Loading either succeeds or throws
//     cemoe::Error. A loaded tokenizer encodes a few fixed texts (ASCII, non-ASCII, added-token
//     lookalikes, the first added token's content inside words and spaces): each Encode either
//     returns or throws cemoe::Error, and invalid UTF-8 always throws cemoe::Error. Returned ids
//     all have a token (IdToToken), Decode of them (with and without special tokens) returns
//     valid UTF-8 or throws cemoe::Error.
//  1. text for a fixed byte-level BPE (NFC normalizer, ByteLevel pre-tokenizer with the GPT-2
//     regex, all 256 byte characters in the vocabulary, a few merges, ByteLevel decoder; added
//     tokens with every flag, all spelled "[...]").
//  2. text for a fixed Llama-style BPE (Sequence[Prepend "▁", Replace " " -> "▁"] normalizer,
//     byte_fallback with <0x00>..<0xFF>, fuse_unk, decoder Sequence[Replace, ByteFallback, Fuse,
//     Strip]).
//  3. text for the same model with the newer layout: Metaspace pre-tokenizer (prepend_scheme
//     "first", split false), decoder Sequence[ByteFallback, Metaspace].
// In modes 1-3 invalid UTF-8 must throw cemoe::Error and valid UTF-8 must encode; every id is
// below vocab_size() (the fixed vocabularies are contiguous) and decodes. Exact round trips,
// which hold for these configurations by construction:
//  1. Decode(Encode(x)) == NFC(x) when x has no '[' (no added token can match); otherwise the
//     two are equal once whitespace is removed (lstrip/rstrip tokens absorb whitespace). The
//     "[...]" spelling matters: '[' and ']' never compose under NFC, so normalizing the pieces
//     between added tokens separately equals normalizing the whole text.
//  2. Decode(Encode(x)) == x with every "▁" turned into a space, when x has no '<' or '['.
//  3. The same, when also x does not start with a space or "▁" (Metaspace's decoder drops the
//     first token's "▁", which is the prepended one only in that case; no vocabulary token holds
//     two "▁").
// Any other exception escapes and libFuzzer reports it; ASan and UBSan catch memory errors and
// UB; -timeout catches hangs. Build and run with launch/fuzz.sh. Thread-safety: libFuzzer calls
// this from one thread.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/check.h"
#include "tests/trainer/tokenizer/json_builders.h"
#include "trainer/tokenizer/tokenizer.h"
#include "trainer/tokenizer/text.h"

namespace {

using cemoe::Tokenizer;
using nlohmann::json;

[[noreturn]] void Die(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "tokenizer_fuzz: property violated: %s\n%s\n", what, detail.c_str());
  std::abort();
}

void Require(bool ok, const char* what, const std::string& detail = "") {
  if (!ok) Die(what, detail);
}

bool ValidUtf8(const std::string& s) {
  size_t bad = 0;
  return cemoe::tok::IsValidUtf8(s, &bad);
}

std::string WithoutWhitespace(const std::string& s) {
  std::string out;
  size_t len = 0;
  for (size_t pos = 0; pos < s.size(); pos += len) {
    const char32_t c = cemoe::tok::DecodeUtf8(s, pos, &len);
    if (!cemoe::tok::IsWhitespace(c)) out.append(s, pos, len);
  }
  return out;
}

std::string ReplaceAll(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
  return s;
}

using cemoe::test::AddedTokenJson;
using cemoe::test::BpeModelJson;
// Mode 1: byte-level BPE (GPT-2 / OLMoE layout).
std::string ByteLevelJson() {
  json vocab = json::object();
  int64_t next = 0;
  for (int b = 0; b < 256; ++b) vocab[cemoe::tok::Utf8(cemoe::tok::ByteToUnicode(b))] = next++;
  json merges = json::array();
  // "Ġ" is ' ', "Ã©" is é (C3 A9), "ä¸" + "Ń" is 中 (E4 B8 AD).
  for (const char* m :
       {"Ġ t", "h e", "Ġt he", "i n", "Ã ©", "e r", "Ġ Ġ", "ä ¸", "ä¸ Ń", "Ġ a", "Ġa n", "Ġan d"}) {
    const std::string s = m;
    const size_t space = s.find(' ');
    vocab[s.substr(0, space) + s.substr(space + 1)] = next++;
    merges.push_back(s);
  }
  json added = json::array({AddedTokenJson(next, "[eot]", true, false, false, false, false),
                            AddedTokenJson(next + 1, "[lst]", true, true, false, false, false),
                            AddedTokenJson(next + 2, "[rst]", true, false, true, false, false),
                            AddedTokenJson(next + 3, "[both]", true, true, true, false, false),
                            AddedTokenJson(next + 4, "[sw]", false, false, false, true, false),
                            AddedTokenJson(next + 5, "[norm]", false, false, false, false, true),
                            AddedTokenJson(next + 6, "[nlst]", false, true, false, false, true),
                            AddedTokenJson(next + 7, "[raw]", false, false, true, false, false)});
  return json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added},
              {"normalizer", {{"type", "NFC"}}},
              {"pre_tokenizer",
               {{"type", "ByteLevel"},
                {"add_prefix_space", false},
                {"trim_offsets", true},
                {"use_regex", true}}},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", BpeModelJson(vocab, merges)}}
      .dump();
}

// Modes 2 and 3: Llama layout, <unk> <s> </s>, <0x00>..<0xFF>, then characters and merges.
std::string LlamaJson(bool metaspace) {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  int64_t next = 3;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = next++;
  }
  for (const char* c :
       {"▁", "a", "b", "c", "d", "e", "h", "i", "l", "n", "o", "r", "t", "é", "中"}) {
    vocab[c] = next++;
  }
  json merges = json::array();
  for (const char* m : {"▁ t", "h e", "▁t he", "l l", "▁ a", "e r", "i n", "▁ 中", "a n", "an d"}) {
    const std::string s = m;
    const size_t space = s.find(' ');
    vocab[s.substr(0, space) + s.substr(space + 1)] = next++;
    merges.push_back(s);
  }
  json model = BpeModelJson(vocab, merges);
  model["unk_token"] = "<unk>";
  model["fuse_unk"] = true;
  model["byte_fallback"] = true;
  json added = json::array({AddedTokenJson(0, "<unk>", true, false, false, false, false),
                            AddedTokenJson(1, "<s>", true, false, false, false, false),
                            AddedTokenJson(2, "</s>", true, false, false, false, false),
                            AddedTokenJson(next, "[INST]", true, true, true, false, false),
                            AddedTokenJson(next + 1, "[n]", false, false, false, false, true),
                            AddedTokenJson(next + 2, "[sw]", false, false, false, true, false)});
  json j = {{"version", "1.0"},      {"truncation", nullptr},     {"padding", nullptr},
            {"added_tokens", added}, {"post_processor", nullptr}, {"model", model}};
  if (metaspace) {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {
        {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", false}};
    j["decoder"] = {{"type", "Sequence"},
                    {"decoders",
                     {{{"type", "ByteFallback"}},
                      {{"type", "Metaspace"},
                       {"replacement", "▁"},
                       {"prepend_scheme", "first"},
                       {"split", false}}}}};
  } else {
    j["normalizer"] = {{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "Prepend"}, {"prepend", "▁"}},
                         {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}};
    j["pre_tokenizer"] = nullptr;
    j["decoder"] = {{"type", "Sequence"},
                    {"decoders",
                     {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  }
  return j.dump();
}

const Tokenizer& Fixed(int mode) {
  static const Tokenizer byte_level = Tokenizer::FromJson(ByteLevelJson(), "byte_level.json");
  static const Tokenizer llama = Tokenizer::FromJson(LlamaJson(false), "llama_prepend.json");
  static const Tokenizer metaspace = Tokenizer::FromJson(LlamaJson(true), "llama_metaspace.json");
  return mode == 1 ? byte_level : mode == 2 ? llama : metaspace;
}

// Every id has a token; Decode (with and without special tokens) gives valid UTF-8 or, unless
// must_decode, throws cemoe::Error. Returns Decode(ids, false); *ok says whether it returned.
std::string CheckDecode(const Tokenizer& tok, const std::vector<int64_t>& ids, bool must_decode,
                        bool* ok) {
  for (int64_t id : ids) Require(tok.IdToToken(id).has_value(), "encoded id has a token");
  *ok = false;
  std::string text;
  try {
    text = tok.Decode(ids, false);
    Require(ValidUtf8(text), "Decode gives valid UTF-8");
    Require(ValidUtf8(tok.Decode(ids, true)), "Decode(skip special) gives valid UTF-8");
    *ok = true;
  } catch (const cemoe::Error& e) {
    if (must_decode) Die("Decode of encoded ids threw", e.what());
  }
  return text;
}

void FuzzJson(const std::string& text) {
  std::optional<Tokenizer> loaded;
  try {
    loaded = Tokenizer::FromJson(text, "fuzz.json");
  } catch (const cemoe::Error& e) {
    // TOKENIZER_FUZZ_VERBOSE=1: say why an input is rejected (to check that seeds load).
    if (std::getenv("TOKENIZER_FUZZ_VERBOSE")) std::fprintf(stderr, "rejected: %s\n", e.what());
    return;
  }
  const Tokenizer& tok = *loaded;
  if (std::getenv("TOKENIZER_FUZZ_VERBOSE")) std::fprintf(stderr, "loaded\n");
  Require(tok.vocab_size() >= 0, "vocab_size is not negative");
  std::vector<std::string> texts = {
      "Hello world, it's 2024!",
      "  h\xC3\xA9llo w\xC3\xB6rld \xE2\x96\x81 \xE6\x97\xA5\xE6\x9C\xAC "
      "e\xCC\x81 \xF0\x9F\x98\x80\t\n",
      "<|endoftext|> <s>x</s> [INST] <unk> <0x41>", ""};
  if (!tok.added_tokens().empty()) {
    const std::string& c = tok.added_tokens()[0].content;
    texts.push_back("a" + c + "b " + c + "  " + c + c);
  }
  for (const std::string& t : texts) {
    std::vector<int64_t> ids;
    try {
      ids = tok.Encode(t);
    } catch (const cemoe::Error&) {
      continue;
    }
    bool ok = false;
    CheckDecode(tok, ids, false, &ok);
  }
  for (const char* bad : {"\xC3", "ab\xFF", "\xED\xA0\x80", "\xC0\xAF"}) {
    try {
      tok.Encode(bad);
      Die("invalid UTF-8 was encoded");
    } catch (const cemoe::Error&) {
    }
  }
}

void FuzzText(int mode, const std::string& text) {
  const Tokenizer& tok = Fixed(mode);
  std::vector<int64_t> ids;
  try {
    ids = tok.Encode(text);
  } catch (const cemoe::Error& e) {
    Require(!ValidUtf8(text), "valid UTF-8 encodes", e.what());
    return;
  }
  Require(ValidUtf8(text), "invalid UTF-8 throws");
  for (int64_t id : ids) Require(id >= 0 && id < tok.vocab_size(), "id below vocab_size()");
  bool ok = false;
  const std::string back = CheckDecode(tok, ids, true, &ok);
  if (mode == 1) {
    const std::string nfc = cemoe::tok::NormalizeForm(text, cemoe::tok::NormalForm::kNFC);
    if (text.find('[') == std::string::npos) {
      Require(back == nfc, "byte-level: Decode(Encode(x)) == NFC(x)", back);
    } else {
      Require(WithoutWhitespace(back) == WithoutWhitespace(nfc),
              "byte-level: Decode(Encode(x)) == NFC(x) up to whitespace", back);
    }
    return;
  }
  if (text.find_first_of("<[") != std::string::npos) return;
  if (mode == 3 && (text.compare(0, 1, " ") == 0 || text.compare(0, 3, "\xE2\x96\x81") == 0)) {
    return;
  }
  Require(back == ReplaceAll(text, "\xE2\x96\x81", " "), "llama: Decode(Encode(x)) == x", back);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 4;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode == 0) {
    FuzzJson(rest);
  } else {
    FuzzText(mode, rest);
  }
  return 0;
}
