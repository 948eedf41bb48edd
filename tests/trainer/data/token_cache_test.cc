// token_cache_test.cc: trainer/data/token_cache.h, token_cache_format.h, tokenized_dataset.h and
// content_hash.h: a second EnsureTokenCache reuses the file; a change in any part of the key
// builds another; a truncated or corrupt file is detected and rebuilt (and refused by
// TokenizedDataset::Open); the mapped examples equal TokenizeConversation's; the counts
// (truncated, dropped, skipped) match the hand-written data; the cache folder's precedence.
#include "trainer/data/token_cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <functional>

#include "model/check.h"
#include "tests/trainer/data/data_test_util.h"
#include "trainer/data/content_hash.h"
#include "trainer/data/tokenized_dataset.h"
#include "trainer/data/tokenized_example.h"
#include "trainer/data/train_data.h"

namespace cemoe {
namespace {

using test::TempDir;
using test::WriteFile;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

TEST(ContentHash, SplitsDoNotMatterAndContentDoes) {
  const std::string text = "The quick brown fox jumps over the lazy dog, 0123456789!";
  const Hash128 whole = HashBytes(text);
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    for (size_t cut2 = cut; cut2 <= text.size(); cut2 += 5) {
      ContentHasher h;
      h.Update(text.substr(0, cut));
      h.Update(text.substr(cut, cut2 - cut));
      h.Update(text.substr(cut2));
      ASSERT_EQ(h.Finish(), whole) << cut << " " << cut2;
    }
  }
  // Every one-byte change, a trailing zero byte and the empty input all give other hashes.
  for (size_t i = 0; i < text.size(); ++i) {
    std::string t = text;
    t[i] ^= 1;
    EXPECT_NE(HashBytes(t), whole) << i;
  }
  EXPECT_NE(HashBytes(text + std::string(1, '\0')), whole);
  EXPECT_NE(HashBytes(""), HashBytes(std::string(1, '\0')));
  EXPECT_NE(HashBytes("").hi, HashBytes("").lo);
  // Fields are length-prefixed: ("ab", "c") != ("a", "bc").
  ContentHasher a, b;
  a.AddField("ab");
  a.AddField("c");
  b.AddField("a");
  b.AddField("bc");
  EXPECT_NE(a.Finish(), b.Finish());
  EXPECT_EQ(whole.Hex().size(), 32u);
  TempDir dir;
  WriteFile(dir / "f", text);
  EXPECT_EQ(HashFile(dir / "f", "test file"), whole);
  EXPECT_THROW(HashFile(dir / "missing", "test file"), Error);
}

class TokenCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tok_path_ = dir_ / "tokenizer.json";
    tok_ = test::WriteCharTokenizer(tok_path_);
    data_path_ = dir_ / "train.jsonl";
    // 5 lines: a normal pair; a long one (truncated at max_length 16); one whose assistant turn
    // is cut off entirely at 16 (dropped); a bad line; a two-turn chat.
    WriteFile(
        data_path_,
        R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})"
        "\n"
        R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "abcdefghijklmnop"}]})"
        "\n"
        R"({"messages": [{"role": "user", "content": "a long question"}, {"role": "assistant", "content": "x"}]})"
        "\n"
        "not json\n"
        R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}, {"role": "user", "content": "s"}, {"role": "assistant", "content": "t"}]})"
        "\n");
    data_.train.push_back(DataSource{});
    data_.train[0].path = data_path_;
    data_.max_length = 16;
    data_.bad_lines = "skip";
    data_.cache_dir = dir_ / "cache";
  }

  TokenCacheResult Ensure() { return EnsureTokenCache(data_.train[0], 0, data_, tok_, renderer_); }

  TempDir dir_;
  std::string tok_path_, data_path_;
  Tokenizer tok_ = Tokenizer::FromJson(test::CharTokenizerJson().dump(), "unused");
  test::TestRenderer renderer_;
  DataSection data_;
};

TEST_F(TokenCacheTest, BuildsOnceThenReusesAndMapsTheSameExamples) {
  const TokenCacheResult first = Ensure();
  EXPECT_TRUE(first.built);
  EXPECT_EQ(first.rebuild_why, "");
  EXPECT_EQ(fs::path(first.path).parent_path(), fs::path(dir_ / "cache/tokens"));
  EXPECT_THAT(fs::path(first.path).filename().string(), ::testing::StartsWith("train-"));
  const TokenCacheCounts& c = first.header.counts;
  EXPECT_EQ(c.lines, 5);
  EXPECT_EQ(c.skipped_lines, 1);
  EXPECT_EQ(c.examples, 3);
  EXPECT_EQ(c.truncated, 2);  // lines 2 and 5 (line 3 is truncated too, but dropped)
  EXPECT_EQ(c.dropped, 1);    // line 3
  EXPECT_THAT(first.first_skip, HasSubstr(data_path_ + ":4: invalid JSON"));
  // Line 1: 11 tokens, 3 loss; line 2: 16 tokens (cut from 24), loss from 'a' of the answer:
  // "<|user|>\na\n<|assistant|>\n" is 6 tokens, so 10 loss tokens; line 5: 4 + 2 + 2 + 1 (q, r)
  // + 4 + 2 + 2 + 1 (s, t) = 18 tokens > 16, cut after "<|assistant|>\nt": loss on "r<|end|>"
  // and "t" = 3.
  EXPECT_EQ(c.tokens, 11 + 16 + 16);
  EXPECT_EQ(c.loss_tokens, 3 + 10 + 3);

  const auto mtime = fs::last_write_time(first.path);
  const TokenCacheResult second = Ensure();
  EXPECT_FALSE(second.built);
  EXPECT_EQ(second.path, first.path);
  EXPECT_EQ(second.header.counts.examples, 3);
  EXPECT_EQ(second.header.key, first.header.key);
  EXPECT_EQ(fs::last_write_time(first.path), mtime);
  // Nothing but the cache file is left in the folder (the temporaries are gone).
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ / "cache/tokens"), fs::directory_iterator()),
            1);

  const TokenizedDataset ds = TokenizedDataset::Open({first.path});
  ASSERT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.num_tokens(), 43);
  EXPECT_EQ(ds.Lengths(), (std::vector<int64_t>{11, 16, 16}));
  const std::vector<std::vector<ChatMessage>> kept = {
      {{"user", "hi"}, {"assistant", "yo"}},
      {{"user", "a"}, {"assistant", "abcdefghijklmnop"}},
      {{"user", "q"}, {"assistant", "r"}, {"user", "s"}, {"assistant", "t"}}};
  for (int64_t i = 0; i < 3; ++i) {
    const TokenizedExample want = TokenizeConversation(kept[i], renderer_, tok_, {16, false});
    const ExampleView got = ds.example(i);
    ASSERT_EQ(got.size, static_cast<int64_t>(want.tokens.size()));
    EXPECT_EQ(std::vector<int32_t>(got.tokens, got.tokens + got.size), want.tokens) << i;
    EXPECT_EQ(std::vector<uint8_t>(got.loss_mask, got.loss_mask + got.size), want.loss_mask) << i;
  }
  EXPECT_THROW(ds.example(3), Error);
  EXPECT_THROW(ds.example(-1), Error);
}

TEST_F(TokenCacheTest, EveryKeyPartChangesTheFile) {
  const TokenCacheResult base = Ensure();
  ASSERT_TRUE(base.built);
  std::vector<std::string> paths = {base.path};
  // Each change must build a new file with another key; undoing it must find the first again.
  auto expect_rebuild = [&](const std::string& what, const std::function<void()>& change,
                            const std::function<void()>& undo) {
    change();
    const TokenCacheResult r = Ensure();
    EXPECT_TRUE(r.built) << what;
    EXPECT_NE(r.header.key, base.header.key) << what;
    EXPECT_EQ(std::find(paths.begin(), paths.end(), r.path), paths.end()) << what;
    paths.push_back(r.path);
    undo();
    const TokenCacheResult back = Ensure();
    EXPECT_FALSE(back.built) << what;
    EXPECT_EQ(back.path, base.path) << what;
  };
  const std::string data_text = test::ReadFileBytes(data_path_);
  expect_rebuild(
      "data bytes", [&] { WriteFile(data_path_, data_text + "\n\n"); },
      [&] { WriteFile(data_path_, data_text); });
  const std::string tok_text = test::ReadFileBytes(tok_path_);
  expect_rebuild(
      "tokenizer.json bytes", [&] { WriteFile(tok_path_, tok_text + " "); },
      [&] { WriteFile(tok_path_, tok_text); });
  const test::TestRenderer plain;
  expect_rebuild(
      "renderer key", [&] { renderer_ = test::TestRenderer("v2"); }, [&] { renderer_ = plain; });
  expect_rebuild(
      "max_length", [&] { data_.max_length = 17; }, [&] { data_.max_length = 16; });
  expect_rebuild(
      "train_on_prompt", [&] { data_.train_on_prompt = true; },
      [&] { data_.train_on_prompt = false; });
  expect_rebuild(
      "first_turn_only", [&] { data_.first_turn_only = true; },
      [&] { data_.first_turn_only = false; });
  // bad_lines "error" stops at line 4 here, so check the key directly for it.
  TokenCacheKeyParts parts;
  parts.fields = ResolveSourceFields(data_.train[0], 0);
  const Hash128 k0 = TokenCacheKey(parts);
  parts.skip_bad_lines = true;
  EXPECT_NE(TokenCacheKey(parts), k0);
  parts.skip_bad_lines = false;
  for (auto* field :
       {&parts.fields.format, &parts.fields.messages_field, &parts.fields.prompt_field,
        &parts.fields.completion_field, &parts.fields.system_field}) {
    const std::string old = *field;
    *field += "x";
    EXPECT_NE(TokenCacheKey(parts), k0) << old;
    *field = old;
  }
  EXPECT_EQ(TokenCacheKey(parts), k0);
  // The path and the recipe field are not part of the key (a moved file is found again).
  parts.fields.path = "elsewhere.jsonl";
  parts.fields.recipe_field = "data.train[7]";
  EXPECT_EQ(TokenCacheKey(parts), k0);
  expect_rebuild(
      "messages_field", [&] { data_.train[0].messages_field = "messages "; },
      [&] { data_.train[0].messages_field = "messages"; });
}

TEST_F(TokenCacheTest, CorruptOrTruncatedFilesAreRebuiltNeverTrusted) {
  const TokenCacheResult base = Ensure();
  const std::string good = test::ReadFileBytes(base.path);
  struct Case {
    std::string name;
    std::function<std::string(std::string)> corrupt;
    std::string why;         // expected substring of rebuild_why
    bool structural = true;  // false: the file is sound but for another key
  };
  const size_t offsets_at = kTokenCacheHeaderBytes;
  const std::vector<Case> cases = {
      {"empty", [](std::string) { return std::string(); }, "shorter than the 128-byte header"},
      {"header only", [](std::string s) { return s.substr(0, 128); }, "need"},
      {"one byte short", [](std::string s) { return s.substr(0, s.size() - 1); }, "need"},
      {"one byte more", [](std::string s) { return s + "x"; }, "need"},
      {"magic",
       [](std::string s) {
         s.at(0) = 'X';
         return s;
       },
       "bad magic"},
      {"version",
       [](std::string s) {
         s.at(8) = 9;
         return s;
       },
       "format version 9"},
      {"key",
       [](std::string s) {
         s.replace(20, 1, 1, static_cast<char>(s.at(20) ^ 1));
         return s;
       },
       "another key", false},
      {"offset order",
       [&](std::string s) {
         int64_t v = 5;  // offsets 0, 11, 27, 43 -> 0, 11, 5, 43: decreasing
         s.replace(offsets_at + 16, 8, reinterpret_cast<const char*>(&v), 8);
         return s;
       },
       "offsets[2]"},
      {"empty example",
       [&](std::string s) {
         int64_t v = 0;  // offsets[1] = 0: an empty example
         s.replace(offsets_at + 8, 8, reinterpret_cast<const char*>(&v), 8);
         return s;
       },
       "offsets[1] = 0"},
      {"counts",
       [](std::string s) {
         s.replace(40, 1, 1, static_cast<char>(s.at(40) + 1));
         return s;
       },
       "need"},  // tokens + 1
  };
  for (const Case& c : cases) {
    WriteFile(base.path, c.corrupt(good));
    if (c.structural) {
      EXPECT_THROW(TokenizedDataset::Open({base.path}), Error) << c.name;
    } else {
      EXPECT_EQ(TokenizedDataset::Open({base.path}).size(), 3) << c.name;
    }
    const TokenCacheResult r = Ensure();
    EXPECT_TRUE(r.built) << c.name;
    EXPECT_THAT(r.rebuild_why, HasSubstr(c.why)) << c.name;
    EXPECT_EQ(test::ReadFileBytes(base.path), good) << c.name;
    EXPECT_FALSE(Ensure().built) << c.name;
  }
  try {
    WriteFile(base.path, good.substr(0, 100));
    TokenizedDataset::Open({base.path});
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("token cache '" + base.path + "' is corrupt: 100 bytes"));
  }
}

TEST_F(TokenCacheTest, ErrorModeAndMissingFiles) {
  data_.bad_lines = "error";
  try {
    Ensure();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(data_path_ + ":4: invalid JSON"));
  }
  data_.bad_lines = "maybe";
  EXPECT_THROW(Ensure(), Error);
  data_.bad_lines = "skip";
  data_.train[0].path = dir_ / "missing.jsonl";
  try {
    Ensure();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("data.train[0].path: cannot open '" + dir_ / "missing.jsonl" +
                                    "': no such file"));
  }
}

TEST_F(TokenCacheTest, LoadTrainDataMapsSourcesInOrder) {
  const std::string second = dir_ / "pairs.jsonl";
  WriteFile(second, R"({"instruction": "i", "output": "o"})"
                    "\n");
  DataSource s;
  s.path = second;
  s.format = "instruction";
  data_.train.push_back(s);
  BatchPlanOptions plan;
  plan.max_length = 16;
  plan.global_batch = 2;
  const TrainData d = LoadTrainData(data_, tok_, renderer_, plan);
  ASSERT_EQ(d.dataset.size(), 4);
  ASSERT_EQ(d.dataset.num_files(), 2u);
  // "<|user|>\ni\n<|assistant|>\no<|end|>\n" = 4 + 2 + 2 + 1 = 9 tokens, last example.
  EXPECT_EQ(d.lengths, (std::vector<int64_t>{11, 16, 16, 9}));
  EXPECT_EQ(d.stats.total.examples, 4);
  EXPECT_EQ(d.stats.total.lines, 6);
  EXPECT_EQ(d.stats.total.skipped_lines, 1);
  EXPECT_TRUE(d.stats.sources[0].built);
  // Packed into rows of <= 16: two examples are full rows and 11 + 9 > 16: 4 rows.
  EXPECT_EQ(d.stats.epoch0.rows, 4);
  EXPECT_EQ(d.stats.epoch0.steps, 2);
  EXPECT_NEAR(d.stats.epoch0.fill, 52.0 / 64.0, 1e-12);
  const std::string text = FormatDataStats(d.stats);
  EXPECT_THAT(text, HasSubstr("3 examples, 43 tokens (16 loss), 2 truncated, 1 dropped, 1 bad "
                              "lines skipped; cache built"));
  EXPECT_THAT(text, HasSubstr("data total: 4 examples"));
  // Second load: all from the cache.
  const TrainData again = LoadTrainData(data_, tok_, renderer_, plan);
  EXPECT_FALSE(again.stats.sources[0].built);
  EXPECT_FALSE(again.stats.sources[1].built);
  EXPECT_EQ(again.lengths, d.lengths);
  data_.train.clear();
  EXPECT_THROW(LoadTrainData(data_, tok_, renderer_, plan), Error);
}

TEST(TokenCacheDir, SettingThenEnvironmentThenHome) {
  const char* old_env = std::getenv("CEMOE_CACHE_DIR");
  const std::string saved = old_env ? old_env : "";
  ::setenv("CEMOE_CACHE_DIR", "/env/cache", 1);
  EXPECT_EQ(ResolveTokenCacheDir("/my/cache"), "/my/cache/tokens");
  EXPECT_EQ(ResolveTokenCacheDir(""), "/env/cache/tokens");
  ::unsetenv("CEMOE_CACHE_DIR");
  EXPECT_EQ(ResolveTokenCacheDir(""), std::string(std::getenv("HOME")) + "/.cache/cemoe/tokens");
  if (old_env) ::setenv("CEMOE_CACHE_DIR", saved.c_str(), 1);
}

}  // namespace
}  // namespace cemoe
