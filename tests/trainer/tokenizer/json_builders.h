// json_builders.h: pieces of tokenizer.json that the tokenizer tests build by hand
// (tests/trainer/tokenizer/tokenizer_test.cc and the fuzz harness tests/fuzz/tokenizer_fuzz.cc).
// Header-only, torch-free. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace cemoe {
namespace test {

// A "model" entry: BPE over `vocab` ({token: id}) and `merges` (a list), every option off.
inline nlohmann::json BpeModelJson(const nlohmann::json& vocab, const nlohmann::json& merges) {
  return {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", nullptr},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", false},
          {"byte_fallback", false},
          {"ignore_merges", false},
          {"vocab", vocab},
          {"merges", merges}};
}

// One "added_tokens" entry.
inline nlohmann::json AddedTokenJson(int64_t id, const std::string& content, bool special,
                                     bool lstrip = false, bool rstrip = false,
                                     bool single_word = false, bool normalized = false) {
  return {{"id", id},
          {"content", content},
          {"special", special},
          {"lstrip", lstrip},
          {"rstrip", rstrip},
          {"single_word", single_word},
          {"normalized", normalized}};
}

}  // namespace test
}  // namespace cemoe
