// tokenizer.h: a Hugging Face-compatible tokenizer read from tokenizer.json (torch-free).
//
//   Tokenizer tok = Tokenizer::FromFile("runs/olmoe");          // folder or tokenizer.json
//   std::vector<int64_t> ids = tok.Encode("Hello <|endoftext|>"); // = HF encode(text,
//                                                                  // add_special_tokens=False).ids
//   std::string text = tok.Decode(ids, /*skip_special_tokens=*/true);  // = HF decode
//
// Pipeline (as tokenizers' Tokenizer::encode): the raw text is split on the added tokens that
// are not normalized (leftmost-longest match, single_word / lstrip / rstrip as
// AddedVocabulary::find_matches); every other piece is normalized, then split on the normalized
// added tokens (matched on the normalized text); the remaining pieces go through the
// pre-tokenizer and the BPE model; added-token pieces map straight to their id.
// Supported components, and what is rejected: docs/oracle.md "Tokenizer". Anything unsupported
// throws cemoe::Error naming the file, the JSON path and the value; nothing is silently ignored
// except post_processor (recorded, not applied: Encode adds no special tokens) and decoder
// options that only affect offsets.
// Thread-safety: a loaded Tokenizer is immutable; Encode/Decode may run on several threads (the
// BPE word cache is guarded by a mutex). Copies share the loaded state.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cemoe {

// One entry of tokenizer.json "added_tokens".
struct AddedToken {
  int64_t id = 0;
  std::string content;
  bool special = false;      // skipped by Decode(..., skip_special_tokens=true)
  bool single_word = false;  // only matches with no word character (\w) on either side
  bool lstrip = false;       // also takes the whitespace on its left
  bool rstrip = false;       // also takes the whitespace on its right
  bool normalized = false;   // matched on the normalized text (else on the raw text)
};

class Tokenizer {
 public:
  // path: a tokenizer.json file or a folder that contains one.
  static Tokenizer FromFile(const std::string& path);
  // The JSON text of a tokenizer.json; `source` names it in error messages.
  static Tokenizer FromJson(const std::string& json_text, const std::string& source);

  // Token ids of UTF-8 text (invalid UTF-8 throws), without any post-processor special tokens.
  std::vector<int64_t> Encode(std::string_view text) const;
  // Text of ids (an id outside the vocabulary throws). skip_special_tokens drops the added
  // tokens marked special.
  // Ids outside the vocabulary are dropped (as tokenizers does).
  std::string Decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const;

  // Added tokens first, then the model vocabulary (as Hugging Face's token_to_id).
  std::optional<int64_t> TokenToId(std::string_view token) const;
  // As Hugging Face's id_to_token (a normalized added token shows its normalized form).
  std::optional<std::string> IdToToken(int64_t id) const;
  // Distinct tokens of the model vocabulary and the added tokens
  // (HF get_vocab_size(with_added_tokens=True)).
  int64_t vocab_size() const;
  // tokenizer.json "added_tokens" in file order.
  const std::vector<AddedToken>& added_tokens() const;
  // The added token with this content, or nullptr.
  const AddedToken* FindAddedToken(std::string_view content) const;
  bool IsSpecial(int64_t id) const;
  // "type" of the post_processor ("" when null), and the whole post_processor JSON text.
  const std::string& post_processor_type() const;
  const std::string& post_processor_json() const;
  // The tokenizer.json path it was read from.
  const std::string& source() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace cemoe
