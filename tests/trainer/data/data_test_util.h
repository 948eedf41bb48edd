// data_test_util.h: what the data pipeline tests share (tests/trainer/data/*_test.cc but the chat
// template's): a temporary folder, file writing, a character-level tokenizer.json whose ids are
// easy to work out by hand, and a tiny chat renderer that does not depend on the real chat
// templates. Header-only, torch-free.
//
// Tokenizer: BPE without merges or pre-tokenizer, so every character of kAlphabet is one token
// whose id is its index in kAlphabet (' ' = 0, '\n' = 1, 'a' = 2, ..., 'z' = 27, 'A' = 28, ...);
// added special tokens <|system|> = 100, <|user|> = 101, <|assistant|> = 102, <|end|> = 103,
// <pad> = 104 (ids 87..99 are unused fillers).
// Renderer (TestRenderer): system and user turns render as "<|role|>\n" + content + "\n"
// (not assistant); an assistant turn as "<|assistant|>\n" (not assistant), content + "<|end|>"
// (assistant) and "\n" (not assistant).
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/trainer/tokenizer/json_builders.h"
#include "trainer/data/chat.h"
#include "trainer/tokenizer/tokenizer.h"

namespace cemoe {
namespace test {

inline constexpr const char* kAlphabet =
    " \nabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?:;'\"-()[]{}/=+*<>|_";
inline constexpr int64_t kSystemId = 100, kUserId = 101, kAssistantId = 102, kEndId = 103,
                         kPadId = 104;

// Character c's id.
inline int64_t Id(char c) {
  const std::string a = kAlphabet;
  return static_cast<int64_t>(a.find(c));
}
// Ids of a plain string (no special tokens).
inline std::vector<int64_t> Ids(const std::string& s) {
  std::vector<int64_t> out;
  for (char c : s) out.push_back(Id(c));
  return out;
}

// A folder under the test temp dir, removed at the end.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cemoe-data-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline nlohmann::json CharTokenizerJson() {
  nlohmann::json vocab = nlohmann::json::object();
  const std::string a = kAlphabet;
  for (size_t i = 0; i < a.size(); ++i) vocab[std::string(1, a[i])] = static_cast<int64_t>(i);
  // Fillers up to id 99, so the added tokens' ids follow the vocabulary (as Hugging Face needs).
  for (int64_t id = static_cast<int64_t>(a.size()); id < kSystemId; ++id) {
    vocab["<unused" + std::to_string(id) + ">"] = id;
  }
  nlohmann::json added = nlohmann::json::array();
  added.push_back(AddedTokenJson(kSystemId, "<|system|>", true));
  added.push_back(AddedTokenJson(kUserId, "<|user|>", true));
  added.push_back(AddedTokenJson(kAssistantId, "<|assistant|>", true));
  added.push_back(AddedTokenJson(kEndId, "<|end|>", true));
  added.push_back(AddedTokenJson(kPadId, "<pad>", true));
  return nlohmann::json{{"version", "1.0"},
                        {"truncation", nullptr},
                        {"padding", nullptr},
                        {"added_tokens", added},
                        {"normalizer", nullptr},
                        {"pre_tokenizer", nullptr},
                        {"post_processor", nullptr},
                        {"decoder", nullptr},
                        {"model", BpeModelJson(vocab, nlohmann::json::array())}};
}

// Writes the tokenizer to `path` and loads it from there (so source() is a real file, as the
// token cache needs).
inline Tokenizer WriteCharTokenizer(const std::string& path, const nlohmann::json& j) {
  WriteFile(path, j.dump());
  return Tokenizer::FromFile(path);
}
inline Tokenizer WriteCharTokenizer(const std::string& path) {
  return WriteCharTokenizer(path, CharTokenizerJson());
}

class TestRenderer : public ChatRenderer {
 public:
  explicit TestRenderer(std::string key_suffix = "") : key_suffix_(std::move(key_suffix)) {}
  std::string Render(const std::vector<ChatMessage>& messages,
                     bool add_generation_prompt) const override {
    std::string out;
    for (const ChatSegment& s : RenderForTraining(messages)) out += s.text;
    if (add_generation_prompt) out += "<|assistant|>\n";
    return out;
  }
  std::vector<ChatSegment> RenderForTraining(
      const std::vector<ChatMessage>& messages) const override {
    std::vector<ChatSegment> out;
    for (const ChatMessage& m : messages) {
      if (m.role == "assistant") {
        out.push_back({"<|assistant|>\n", false});
        out.push_back({m.content + "<|end|>", true});
        out.push_back({"\n", false});
      } else {
        out.push_back({"<|" + m.role + "|>\n" + m.content + "\n", false});
      }
    }
    return out;
  }
  std::string CacheKey() const override { return "test-renderer/1" + key_suffix_; }

 private:
  std::string key_suffix_;
};

}  // namespace test
}  // namespace cemoe
