// tokenizer_test.cc: trainer/tokenizer/tokenizer.h on tiny hand-written tokenizer.json files whose ids are
// worked out by hand in the comments. Torch-free (links cemoe_tokenizer only). The comparison
// with the tokenizers library on trained tokenizers is tests/oracle/tokenizer_oracle.py.
#include "trainer/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "model/check.h"
#include "tests/trainer/tokenizer/json_builders.h"
#include "trainer/tokenizer/added.h"
#include "trainer/tokenizer/text.h"

namespace cemoe {
namespace {

using nlohmann::json;
using Ids = std::vector<int64_t>;

// A tokenizer.json with a BPE model of the given vocab and merges; parts are set by the caller.
json TinyFile(json vocab, json merges) {
  // Brace-initialised JSON: {} is null and {"x y"} a plain string; both mean a merges list here.
  if (merges.is_null()) merges = json::array();
  if (merges.is_string()) merges = json::array({merges});
  return json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", json::array()},
              {"normalizer", nullptr},
              {"pre_tokenizer", nullptr},
              {"post_processor", nullptr},
              {"decoder", nullptr},
              {"model", test::BpeModelJson(vocab, merges)}};
}

Tokenizer Load(const json& j) { return Tokenizer::FromJson(j.dump(), "tiny.json"); }

using test::AddedTokenJson;

// The error message of loading j, or "" when it loads.
std::string LoadError(const json& j) {
  try {
    Load(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Tokenizer, MergesApplyLowestRankFirst) {
  // "abc": pairs (a,b) and (b,c). With "b c" ranked first: a + bc, and (a, bc) has no merge.
  // With "a b" first: ab + c, then "ab c" gives abc.
  const json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};
  EXPECT_EQ(Load(TinyFile(vocab, {"b c", "a b", "ab c"})).Encode("abc"), (Ids{0, 4}));
  EXPECT_EQ(Load(TinyFile(vocab, {"a b", "b c", "ab c"})).Encode("abc"), (Ids{5}));
  // Pair form of the merges gives the same.
  EXPECT_EQ(Load(TinyFile(vocab, json::array({json::array({"b", "c"}), json::array({"a", "b"}),
                                              json::array({"ab", "c"})})))
                .Encode("abc"),
            (Ids{0, 4}));
  // Equal ranks: the leftmost pair merges first: "aaa" -> aa + a.
  EXPECT_EQ(Load(TinyFile({{"a", 0}, {"aa", 1}}, {"a a"})).Encode("aaa"), (Ids{1, 0}));
  // A merged symbol merges again with its new neighbours: "abab" -> ab ab -> abab.
  const json v2 = {{"a", 0}, {"b", 1}, {"ab", 2}, {"abab", 3}};
  EXPECT_EQ(Load(TinyFile(v2, {"a b", "ab ab"})).Encode("abab"), (Ids{3}));
}

TEST(Tokenizer, ByteLevelMapsUtf8BytesToGpt2Characters) {
  // " é\n": the GPT-2 regex gives " é" and "\n". Bytes: ' ' (0x20) -> U+0120 "Ġ", é = C3 A9 ->
  // U+00C3 "Ã" U+00A9 "©", '\n' (0x0A) -> U+010A "Ċ".
  json j = TinyFile({{"Ã", 0}, {"©", 1}, {"Ġ", 2}, {"Ã©", 3}, {"Ċ", 4}}, {"Ã ©"});
  j["pre_tokenizer"] = {{"type", "ByteLevel"},
                        {"add_prefix_space", false},
                        {"trim_offsets", true},
                        {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  Tokenizer tok = Load(j);
  EXPECT_EQ(tok.Encode(" é\n"), (Ids{2, 3, 4}));
  EXPECT_EQ(tok.Decode({2, 3, 4}, false), " é\n");
  // A lone continuation byte decodes as U+FFFD (from_utf8_lossy).
  EXPECT_EQ(tok.Decode({1}, false), "\xEF\xBF\xBD");
  // add_prefix_space: "é" becomes " é".
  j["pre_tokenizer"]["add_prefix_space"] = true;
  EXPECT_EQ(Load(j).Encode("é"), (Ids{2, 3}));
}

json ByteFallbackFile(bool byte_fallback, bool fuse_unk) {
  // 中 = E4 B8 AD; € = E2 82 AC (no byte tokens for it).
  json j = TinyFile({{"<unk>", 0}, {"<0xE4>", 1}, {"<0xB8>", 2}, {"<0xAD>", 3}, {"a", 4}}, {});
  j["model"]["unk_token"] = "<unk>";
  j["model"]["byte_fallback"] = byte_fallback;
  j["model"]["fuse_unk"] = fuse_unk;
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  return j;
}

TEST(Tokenizer, ByteFallbackEmitsByteTokens) {
  Tokenizer tok = Load(ByteFallbackFile(true, false));
  EXPECT_EQ(tok.Encode("a中"), (Ids{4, 1, 2, 3}));
  EXPECT_EQ(tok.Encode("a€"), (Ids{4, 0}));  // not all bytes in the vocab: unk
  EXPECT_EQ(tok.Decode({4, 1, 2, 3}, false), "a中");
  EXPECT_EQ(tok.Decode({4, 1, 2}, false), "a\xEF\xBF\xBD\xEF\xBF\xBD");  // one U+FFFD per byte
  // Ids past the vocabulary (a model's larger embedding) are dropped, as tokenizers does.
  EXPECT_EQ(tok.Decode({4, 1000, 1, 2, 3, -1}, false), "a中");
  // Without byte_fallback the character is unknown.
  EXPECT_EQ(Load(ByteFallbackFile(false, false)).Encode("a中"), (Ids{4, 0}));
}

TEST(Tokenizer, FuseUnkFusesConsecutiveUnknowns) {
  EXPECT_EQ(Load(ByteFallbackFile(false, true)).Encode("€€a€"), (Ids{0, 4, 0}));
  EXPECT_EQ(Load(ByteFallbackFile(false, false)).Encode("€€a€"), (Ids{0, 0, 4, 0}));
}

json MetaspaceFile(const std::string& scheme) {
  json j = TinyFile({{"▁", 0}, {"a", 1}, {"▁a", 2}, {"<s>", 3}}, {"▁ a"});
  j["added_tokens"] = {AddedTokenJson(3, "<s>", true)};
  j["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", scheme}, {"split", false}};
  j["decoder"] = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", scheme}, {"split", false}};
  return j;
}

TEST(Tokenizer, MetaspacePrependSchemeFirstOnlyAtTheStartOfTheInput) {
  Tokenizer first = Load(MetaspaceFile("first"));
  Tokenizer always = Load(MetaspaceFile("always"));
  Tokenizer never = Load(MetaspaceFile("never"));
  // "a a" -> "▁a▁a" (first and always) -> ▁a ▁a; never: "a▁a" -> a ▁a.
  EXPECT_EQ(first.Encode("a a"), (Ids{2, 2}));
  EXPECT_EQ(always.Encode("a a"), (Ids{2, 2}));
  EXPECT_EQ(never.Encode("a a"), (Ids{1, 2}));
  // After an added token the piece does not start the input: first leaves "a" alone.
  EXPECT_EQ(first.Encode("<s>a"), (Ids{3, 1}));
  EXPECT_EQ(always.Encode("<s>a"), (Ids{3, 2}));
  // Decode drops the replacement in the first token when a prefix was prepended.
  EXPECT_EQ(first.Decode({2, 2}, false), "a a");
  EXPECT_EQ(never.Decode({2, 2}, false), " a a");
  EXPECT_EQ(first.Decode({3, 2}, true), "a");
}

json AddedTokenFile() {
  json j = TinyFile({{" ", 0}, {"a", 1}, {"b", 2}, {"<", 3}, {"W", 4}, {">", 5}}, {});
  j["added_tokens"] = {AddedTokenJson(6, "<L>", true, /*lstrip=*/true),
                       AddedTokenJson(7, "<R>", true, false, /*rstrip=*/true),
                       AddedTokenJson(8, "<W>", false, false, false, /*single_word=*/true),
                       AddedTokenJson(9, "<L><R>", true)};
  return j;
}

TEST(Tokenizer, AddedTokensStripAndSingleWordAsHuggingFace) {
  Tokenizer tok = Load(AddedTokenFile());
  EXPECT_EQ(tok.Encode("a  <L>b"), (Ids{1, 6, 2}));        // lstrip takes the spaces on the left
  EXPECT_EQ(tok.Encode("a<L>  b"), (Ids{1, 6, 0, 0, 2}));  // but not those on the right
  EXPECT_EQ(tok.Encode("a<R>  b"), (Ids{1, 7, 2}));        // rstrip takes those on the right
  EXPECT_EQ(tok.Encode("a  <R>b"), (Ids{1, 0, 0, 7, 2}));
  EXPECT_EQ(tok.Encode("a <W> b"), (Ids{1, 0, 8, 0, 2}));  // single word: spaces around
  EXPECT_EQ(tok.Encode("a<W>b"), (Ids{1, 3, 4, 5, 2}));    // inside a word: plain text
  EXPECT_EQ(tok.Encode("<L><R>"), (Ids{9}));               // longest match wins
  EXPECT_EQ(tok.Decode({1, 6, 8, 7}, true), "a <W>");      // special skipped; no decoder: " "
  EXPECT_EQ(tok.Decode({1, 6, 2}, false), "a <L> b");      // no decoder: joined with spaces
  EXPECT_EQ(tok.vocab_size(), 10);
  EXPECT_EQ(tok.TokenToId("<R>"), 7);
  EXPECT_EQ(tok.IdToToken(8), "<W>");
  EXPECT_TRUE(tok.IsSpecial(6));
  EXPECT_FALSE(tok.IsSpecial(8));
  ASSERT_NE(tok.FindAddedToken("<L>"), nullptr);
  EXPECT_TRUE(tok.FindAddedToken("<L>")->lstrip);
}

TEST(Tokenizer, NormalizedAddedTokensMatchTheNormalizedText) {
  // Prepend "▁" and Replace " " -> "▁" (Llama). "<c>" is normalized: its pattern is "▁<c>".
  json j = TinyFile({{"▁", 0}, {"x", 1}, {"<", 2}, {"c", 3}, {">", 4}}, {});
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Prepend"}, {"prepend", "▁"}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}};
  j["added_tokens"] = {AddedTokenJson(5, "<c>", false, false, false, false, /*normalized=*/true),
                       AddedTokenJson(6, "<s>", true)};
  Tokenizer tok = Load(j);
  EXPECT_EQ(tok.Encode("x <c>"), (Ids{0, 1, 5}));       // "▁x▁<c>": "▁<c>" matches
  EXPECT_EQ(tok.Encode("x<c>"), (Ids{0, 1, 2, 3, 4}));  // "▁x<c>": no "▁<c>"
  // Every non-added piece is normalized on its own: "x<s>x" -> "▁x", <s>, "▁x".
  EXPECT_EQ(tok.Encode("x<s>x"), (Ids{0, 1, 6, 0, 1}));
  EXPECT_EQ(tok.IdToToken(5), "▁<c>");  // HF shows the normalized content
}

TEST(Tokenizer, NfcComposesADecomposedE) {
  json j = TinyFile({{"é", 0}, {"e", 1}, {"\xCC\x81", 2}}, {});
  EXPECT_EQ(Load(j).Encode("e\xCC\x81"), (Ids{1, 2}));
  j["normalizer"] = {{"type", "NFC"}};
  EXPECT_EQ(Load(j).Encode("e\xCC\x81"), (Ids{0}));
  j["normalizer"] = {{"type", "NFD"}};
  EXPECT_EQ(Load(j).Encode("é"), (Ids{1, 2}));
}

TEST(Tokenizer, SplitDigitsAndStripBehaveAsDocumented) {
  // Whitespace pre-tokenizer drops spaces; Digits individual splits "12" into 1, 2.
  json j = TinyFile({{"a", 0}, {"1", 1}, {"2", 2}, {"12", 3}, {"-", 4}}, {"1 2"});
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "WhitespaceSplit"}}, {{"type", "Digits"}, {"individual_digits", true}}}}};
  EXPECT_EQ(Load(j).Encode(" a12  12"), (Ids{0, 1, 2, 1, 2}));
  j["pre_tokenizer"]["pretokenizers"][1]["individual_digits"] = false;
  EXPECT_EQ(Load(j).Encode(" a12  12"), (Ids{0, 3, 3}));
  // Split on "-" merged with the next piece vs removed.
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"String", "-"}}},
                        {"behavior", "Removed"},
                        {"invert", false}};
  EXPECT_EQ(Load(j).Encode("1-2"), (Ids{1, 2}));
  j["normalizer"] = {{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}};
  j["pre_tokenizer"] = nullptr;
  EXPECT_EQ(Load(j).Encode("\t 12 \n"), (Ids{3}));
}

TEST(Tokenizer, LoadsFromAFolderAndRejectsBadFiles) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("cemoe_tok_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << TinyFile({{"a", 0}}, json::array()).dump();
  EXPECT_EQ(Tokenizer::FromFile(dir.string()).Encode("aa"), (Ids{0, 0}));
  EXPECT_EQ(Tokenizer::FromFile((dir / "tokenizer.json").string()).source(),
            (dir / "tokenizer.json").string());
  try {
    Tokenizer::FromFile((dir / "none.json").string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("none.json: cannot open"), std::string::npos);
  }
  fs::remove_all(dir);
  EXPECT_THROW(Load(TinyFile({{"a", 0}}, json::array())).Encode("\xC3"), Error);  // bad UTF-8
  // An unknown id decodes to nothing, as in tokenizers (it is not an error).
  EXPECT_EQ(Load(TinyFile({{"a", 0}}, json::array())).Decode({7, 0}, false), "a");
}

TEST(Tokenizer, UnsupportedOrInvalidPartsNameTheFileFieldAndValue) {
  const json base = TinyFile({{"a", 0}, {"b", 1}, {"ab", 2}}, {"a b"});
  struct Case {
    std::string what;
    json file;
    std::string expected;
  };
  std::vector<Case> cases;
  auto with = [&base](const std::string& key, json value) {
    json j = base;
    j[key] = value;
    return j;
  };
  auto with_model = [&base](const std::string& key, json value) {
    json j = base;
    j["model"][key] = value;
    return j;
  };
  cases.push_back({"model type", with_model("type", "WordPiece"),
                   "tiny.json: model.type: unsupported value \"WordPiece\""});
  cases.push_back({"dropout", with_model("dropout", 0.1), "tiny.json: model.dropout: unsupported"});
  cases.push_back({"merge not in vocab", with_model("merges", json::array({"a c"})),
                   "tiny.json: model.merges[0]: \"c\" is not in model.vocab"});
  cases.push_back({"merge result", with_model("merges", json::array({"b a"})),
                   "tiny.json: model.merges[0]: the merge result \"ba\" is not in model.vocab"});
  cases.push_back(
      {"merge format", with_model("merges", json::array({"ab"})), "tiny.json: model.merges[0]:"});
  cases.push_back({"vocab id", with_model("vocab", {{"a", -1}}), "tiny.json: model.vocab.a:"});
  cases.push_back({"normalizer", with("normalizer", {{"type", "BertNormalizer"}}),
                   "tiny.json: normalizer.type: unsupported value \"BertNormalizer\""});
  cases.push_back({"nested normalizer",
                   with("normalizer", {{"type", "Sequence"},
                                       {"normalizers", {{{"type", "NFC"}}, {{"type", "Foo"}}}}}),
                   "tiny.json: normalizer.normalizers[1].type: unsupported value \"Foo\""});
  cases.push_back(
      {"bad regex",
       with("normalizer", {{"type", "Replace"}, {"pattern", {{"Regex", "(a"}}}, {"content", "x"}}),
       "tiny.json: normalizer.pattern: regex \"(a\" does not compile"});
  cases.push_back({"pre_tokenizer", with("pre_tokenizer", {{"type", "BertPreTokenizer"}}),
                   "tiny.json: pre_tokenizer.type: unsupported value \"BertPreTokenizer\""});
  cases.push_back({"split behavior",
                   with("pre_tokenizer",
                        {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Weird"}}),
                   "tiny.json: pre_tokenizer.behavior: unsupported value \"Weird\""});
  cases.push_back({"prepend scheme",
                   with("pre_tokenizer",
                        {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "some"}}),
                   "tiny.json: pre_tokenizer.prepend_scheme: unsupported value \"some\""});
  cases.push_back({"replacement",
                   with("pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "ab"}}),
                   "tiny.json: pre_tokenizer.replacement: expected exactly one character"});
  cases.push_back({"decoder", with("decoder", {{"type", "WordPiece"}}),
                   "tiny.json: decoder.type: unsupported value \"WordPiece\""});
  cases.push_back({"truncation", with("truncation", {{"max_length", 8}}),
                   "tiny.json: truncation: unsupported value"});
  cases.push_back(
      {"added id", with("added_tokens", {AddedTokenJson(5, "<x>", true)}),
       "tiny.json: added_tokens[0].id: 5 for \"<x>\", but Hugging Face assigns it id 3"});
  cases.push_back({"added flag",
                   with("added_tokens", {{{"id", 3}, {"content", "<x>"}, {"lstrip", 1}}}),
                   "tiny.json: added_tokens[0].lstrip: expected true or false, got 1"});
  json no_model = base;
  no_model.erase("model");
  cases.push_back({"no model", no_model, "tiny.json: model: missing field"});
  for (const Case& c : cases) {
    const std::string message = LoadError(c.file);
    EXPECT_NE(message.find(c.expected), std::string::npos)
        << c.what << ": got \"" << message << "\"";
  }
  try {
    Tokenizer::FromJson("{\"model\": ", "broken.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("broken.json: invalid JSON"), std::string::npos);
  }
}

// Regressions from fuzzing (tests/fuzz/tokenizer_fuzz.cc, docs/oracle.md "Fuzzing").

TEST(Tokenizer, DeeplyNestedJsonIsAnErrorNotAStackOverflow) {
  // The post_processor is kept as JSON text (dump() recurses once per level): 100000 levels used
  // to overflow the stack. Brackets inside strings do not count.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string text = R"({"post_processor": {"type": "X", "a": )" + deep +
                           R"(}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})";
  try {
    Tokenizer::FromJson(text, "deep.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deep.json: invalid JSON: arrays and objects nested "
                                         "deeper than 128 levels"),
              std::string::npos)
        << e.what();
  }
  json j = TinyFile({{"[", 0}}, {});
  j["post_processor"] = {{"type", "X"}, {"note", std::string(1000, '{')}};
  EXPECT_EQ(Load(j).Encode("[["), (Ids{0, 0}));
}

TEST(Tokenizer, RegexByteEscapeIsRefused) {
  // \C matches one byte inside a character: "^\C" removed the first byte of "é" and left
  // invalid UTF-8 for the model (read past the end of the word). PCRE2 now refuses \C.
  json j = TinyFile({{"a", 0}}, {});
  j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", "^\\C"}}}, {"content", ""}};
  EXPECT_NE(LoadError(j).find("tiny.json: normalizer.pattern: regex \"^\\\\C\" does not compile"),
            std::string::npos)
      << LoadError(j);
  j = TinyFile({{"a", 0}}, {});
  j["decoder"] = {{"type", "Replace"}, {"pattern", {{"Regex", "a\\C"}}}, {"content", ""}};
  EXPECT_NE(LoadError(j).find("tiny.json: decoder.pattern: regex"), std::string::npos)
      << LoadError(j);
}

TEST(Tokenizer, RegexMatchLimitIsAnErrorNamingTheField) {
  // PCRE2's match limit (here lowered in the pattern itself; (*NO_START_OPT) keeps PCRE2 from
  // seeing up front that there is no "c") must give a cemoe::Error that names the file and the
  // field, not a crash, a hang or a silently shorter match list.
  json j = TinyFile({{"a", 0}, {"b", 1}}, {});
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "(*LIMIT_MATCH=20)(*NO_START_OPT)(?:a|b|ab)*c"}}},
                        {"behavior", "Isolated"}};
  Tokenizer tok = Load(j);
  try {
    tok.Encode("abababababababababababababababab");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tiny.json: pre_tokenizer.pattern: regex"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("matching failed"), std::string::npos) << e.what();
  }
  EXPECT_EQ(tok.Encode("ab"), (Ids{0, 1}));  // under the limit: no error
}

TEST(Tokenizer, LstripOverLongWhitespaceRunsIsLinear) {
  // An lstrip token that is itself whitespace: each match used to scan back over all the
  // whitespace before it (into earlier matches), O(n^2) on a long run of spaces.
  json j = TinyFile({{"a", 0}}, {});
  j["added_tokens"] = {AddedTokenJson(1, "  ", false, /*lstrip=*/true)};
  Tokenizer tok = Load(j);
  const Ids ids = tok.Encode(std::string(400000, ' '));
  EXPECT_EQ(ids, Ids(200000, 1));
  // "a", then "  " (after a non-space: nothing to strip), then " " (not in the vocabulary and
  // no unk_token: dropped).
  EXPECT_EQ(tok.Encode("a   "), (Ids{0, 1}));
}

// The Llama-3 split pattern (Split, Isolated) then ByteLevel without its own regex, over a
// vocabulary of the 256 byte-level characters: every byte encodes to one id.
json Llama3SplitFile() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[tok::Utf8(tok::ByteToUnicode(static_cast<uint8_t>(b)))] = b;
  json j = TinyFile(vocab, {});
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern",
          {{"Regex",
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
            "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  return j;
}

TEST(Tokenizer, PathologicalSplitRegexExhaustsTheEncodeBudgetQuickly) {
  // "a*a*b|." on a run of n letters with no "b": every start position tries the first branch,
  // the first a* gives back its letters one by one and the second runs over the rest each time:
  // O(n^2) work per position, under PCRE2's per-attempt limits (about n of its units), O(n^3)
  // per text. Before the encode budget: 3.6 s for 4,000 letters, growing as n^3. Now the encode
  // stops after its budget (2.07 M steps for 4,000 bytes) with an error that names the file, the
  // pattern's JSON path and the budget.
  json j = TinyFile({{"a", 0}, {"b", 1}}, {});
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "a*a*b|."}}}, {"behavior", "Isolated"}};
  Tokenizer tok = Load(j);
  EXPECT_EQ(tok.Encode("aab"), (Ids{0, 0, 1}));  // short text: far under the budget
  for (size_t n : {4000, 64000}) {
    const auto start = std::chrono::steady_clock::now();
    try {
      tok.Encode(std::string(n, 'a'));
      ADD_FAILURE() << "no error for " << n << " letters";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("tiny.json: pre_tokenizer.pattern: regex \"a*a*b|.\": the encode of a " +
                          std::to_string(n) + "-byte text exceeded its regex budget of " +
                          std::to_string(1048576 + 256 * n) + " steps"),
                std::string::npos)
          << what;
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // Measured 0.7 ms (4,000) and 5 ms (64,000) on a loaded 2-core VM; the bound leaves room
    // for a sanitized build.
    EXPECT_LT(s, 5.0) << n << " letters";
  }
}

// The same budget covers the other patterns from tokenizer.json: a Replace normalizer (charged to
// the Encode) and a Replace decoder (charged to the Decode, by the bytes of its tokens).
TEST(Tokenizer, PathologicalReplacePatternsExhaustTheirBudgetsToo) {
  const std::string pattern = "a*a*b|.";
  const std::string letters(4000, 'a');
  json j = TinyFile({{"a", 0}, {"b", 1}, {letters, 2}}, {});
  j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", pattern}}}, {"content", "a"}};
  Tokenizer normalized = Load(j);
  EXPECT_EQ(normalized.Encode("ba"), (Ids{0, 0}));  // "b" and "a" each replaced by "a"
  auto error = [](const std::function<void()>& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string encode = error([&] { normalized.Encode(letters); });
  for (const std::string& part : {std::string("tiny.json: normalizer.pattern: regex \"a*a*b|.\""),
                                  std::string("the encode of a 4000-byte text exceeded its regex "
                                              "budget")}) {
    EXPECT_NE(encode.find(part), std::string::npos) << encode;
  }
  json d = TinyFile({{"a", 0}, {"b", 1}, {letters, 2}}, {});
  d["decoder"] = {{"type", "Replace"}, {"pattern", {{"Regex", pattern}}}, {"content", "x"}};
  Tokenizer decoding = Load(d);
  EXPECT_EQ(decoding.Decode({0, 1}, false), "xx");
  const std::string decode = error([&] { decoding.Decode({2}, false); });
  for (const std::string& part :
       {std::string("decoder.pattern: regex \"a*a*b|.\""), std::string("the decode of"),
        std::string("exceeded its regex budget")}) {
    EXPECT_NE(decode.find(part), std::string::npos) << decode;
  }
}

TEST(Tokenizer, LongOrdinaryTextStaysFarUnderTheEncodeBudget) {
  // 1 MB of prose with the Llama-3 split regex, and 256 KB of spaces and newlines (the regex's
  // \s*[\r\n]+ and \s+(?!\S) walk back over such runs): both encode, one id per byte.
  Tokenizer tok = Load(Llama3SplitFile());
  const std::string sentence =
      "It's 2024: the quick brown fox -- caf\xC3\xA9, na\xC3\xAFve -- jumped 1234567 times!\n"
      "    Indented code(x, y) { return x + y; }\t// comment\r\n\n";
  std::string prose;
  while (prose.size() < (1 << 20)) prose += sentence;
  EXPECT_EQ(tok.Encode(prose).size(), prose.size());
  std::string blank(1 << 18, ' ');
  for (size_t i = 0; i < blank.size(); i += 1000) blank[i] = '\n';
  EXPECT_EQ(tok.Encode(blank).size(), blank.size());
  EXPECT_EQ(tok.Encode(std::string(1 << 18, ' ')).size(), size_t{1} << 18);
}

// The added-token split as the matcher did it before the automaton: at each position, the
// longest pattern that starts there (by comparing every pattern), then the same single_word /
// lstrip / rstrip rules (added.h). The reference for the automaton.
std::vector<tok::AddedTokenMatcher::Segment> NaiveAddedSplit(
    const std::vector<const AddedToken*>& tokens, const std::vector<std::string>& patterns,
    std::string_view text) {
  auto last_char = [&text](size_t end) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    size_t len = 0;
    return tok::DecodeUtf8(text, start, &len);
  };
  std::vector<tok::AddedTokenMatcher::Segment> out;
  size_t done = 0, pos = 0, len = 0;
  while (pos < text.size()) {
    int best = -1;
    for (size_t i = 0; i < patterns.size(); ++i) {
      const std::string& p = patterns[i];
      if (!p.empty() && text.compare(pos, p.size(), p) == 0 &&
          (best < 0 || p.size() > patterns[best].size())) {
        best = static_cast<int>(i);
      }
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + patterns[best].size();
    pos = stop;
    const AddedToken& t = *tokens[best];
    if (t.single_word &&
        ((start > 0 && tok::IsWordChar(last_char(start))) ||
         (stop < text.size() && tok::IsWordChar(tok::DecodeUtf8(text, stop, &len))))) {
      continue;
    }
    while (t.lstrip && start > done && tok::IsWhitespace(last_char(start))) {
      start -= tok::Utf8(last_char(start)).size();
    }
    while (t.rstrip && stop < text.size() && tok::IsWhitespace(tok::DecodeUtf8(text, stop, &len))) {
      stop += len;
    }
    if (done < start) out.push_back({done, start, -1});
    out.push_back({start, stop, t.id});
    done = stop;
  }
  if (done < text.size()) out.push_back({done, text.size(), -1});
  return out;
}

TEST(Tokenizer, AddedTokenAutomatonAgreesWithComparingEveryToken) {
  // Random token sets over a small alphabet (so that tokens share prefixes and suffixes, nest
  // and repeat) with random flags, on random texts: the same segments as the naive scan.
  const std::vector<std::string> alphabet = {"a", "b", "<", " ", "\xC3\xA9", "\n"};
  std::mt19937 rng(13);
  auto pick = [&rng](size_t n) { return static_cast<size_t>(rng() % n); };
  auto random_string = [&](size_t max_chars) {
    std::string s;
    for (size_t i = 0, n = 1 + pick(max_chars); i < n; ++i) s += alphabet[pick(alphabet.size())];
    return s;
  };
  for (int round = 0; round < 300; ++round) {
    std::vector<AddedToken> owned(1 + pick(12));
    std::vector<const AddedToken*> tokens;
    std::vector<std::string> patterns;
    for (size_t i = 0; i < owned.size(); ++i) {
      AddedToken& t = owned[i];
      t.id = static_cast<int64_t>(i);
      t.content = random_string(5);
      t.single_word = pick(4) == 0;
      t.lstrip = pick(3) == 0;
      t.rstrip = pick(3) == 0;
    }
    for (const AddedToken& t : owned) {
      tokens.push_back(&t);
      patterns.push_back(pick(10) == 0 ? std::string() : t.content);  // "" never matches
    }
    const tok::AddedTokenMatcher matcher(tokens, patterns);
    for (int k = 0; k < 20; ++k) {
      const std::string text = random_string(40);
      const auto got = matcher.Split(text);
      const auto want = NaiveAddedSplit(tokens, patterns, text);
      ASSERT_EQ(got.size(), want.size()) << "round " << round << " text " << text;
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].begin, want[i].begin) << round << ":" << k << ":" << i;
        EXPECT_EQ(got[i].end, want[i].end) << round << ":" << k << ":" << i;
        EXPECT_EQ(got[i].id, want[i].id) << round << ":" << k << ":" << i;
      }
    }
  }
}

TEST(Tokenizer, ThousandsOfAddedTokensSharingALongPrefixSplitInLinearTime) {
  // 4,000 tokens "x" * 256 + number; the text a 200,000-byte run of "x" (every position starts
  // a near miss) and the tokens themselves. Comparing every token that starts with "x" at every
  // position took 5.3 s for this run; the automaton, 0.01 s.
  json j = TinyFile({{"x", 0}, {"0", 1}, {"1", 2}, {"2", 3}}, {});
  const std::string prefix(256, 'x');
  for (int i = 0; i < 4000; ++i) {
    j["added_tokens"].push_back(
        AddedTokenJson(4 + i, prefix + std::to_string(i), /*special=*/true));
  }
  Tokenizer tok = Load(j);
  const auto start = std::chrono::steady_clock::now();
  const std::string run(200000, 'x');
  EXPECT_EQ(tok.Encode(run), Ids(run.size(), 0));
  EXPECT_EQ(tok.Encode("x" + prefix + "12" + prefix + "3999"), (Ids{0, 4 + 12, 4 + 3999}));
  // "x" * 256 + "1234" is longest-matched as token 1234 even though token 123 is a prefix.
  EXPECT_EQ(tok.Encode(prefix + "1234"), (Ids{4 + 1234}));
  EXPECT_EQ(tok.Encode(prefix + "4000"), (Ids{4 + 400, 1}));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(s, 2.0);  // measured 0.01 s
}

}  // namespace
}  // namespace cemoe
