#include "trainer/tokenizer/char_tokenizer.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "model/atomic_folder.h"

namespace cemoe {
namespace {

using nlohmann::ordered_json;

const char* const kSpecial[] = {"<|pad|>", "<|endoftext|>", "<|im_end|>", "<|im_start|>", "<unk>"};

const char* kChatMl =
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

}  // namespace

std::string CharTokenizerJson() {
  ordered_json vocab = ordered_json::object();
  int64_t id = 0;
  for (const char* s : kSpecial) vocab[s] = id++;
  vocab["\t"] = id++;
  vocab["\n"] = id++;
  for (char c = ' '; c <= '~'; ++c) vocab[std::string(1, c)] = id++;
  ordered_json added = ordered_json::array();
  for (int64_t i = 0; i < 5; ++i) {
    added.push_back({{"id", i},
                     {"content", kSpecial[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  ordered_json j = {{"version", "1.0"},
                    {"truncation", nullptr},
                    {"padding", nullptr},
                    {"added_tokens", added},
                    {"normalizer", nullptr},
                    {"pre_tokenizer", nullptr},
                    {"post_processor", nullptr},
                    {"decoder", nullptr},
                    {"model",
                     {{"type", "BPE"},
                      {"dropout", nullptr},
                      {"unk_token", "<unk>"},
                      {"continuing_subword_prefix", nullptr},
                      {"end_of_word_suffix", nullptr},
                      {"fuse_unk", false},
                      {"byte_fallback", false},
                      {"ignore_merges", false},
                      {"vocab", vocab},
                      {"merges", ordered_json::array()}}}};
  return j.dump(2) + "\n";
}

std::string CharTokenizerConfigJson() {
  ordered_json decoder = ordered_json::object();
  for (int64_t i = 0; i < 5; ++i) {
    decoder[std::to_string(i)] = {{"content", kSpecial[i]}, {"lstrip", false},
                                  {"normalized", false},    {"rstrip", false},
                                  {"single_word", false},   {"special", true}};
  }
  ordered_json j = {{"added_tokens_decoder", decoder},
                    {"bos_token", "<|endoftext|>"},
                    {"eos_token", "<|im_end|>"},
                    {"pad_token", "<|pad|>"},
                    {"unk_token", "<unk>"},
                    {"chat_template", kChatMl},
                    {"clean_up_tokenization_spaces", false},
                    {"model_max_length", 1000000},
                    {"tokenizer_class", "PreTrainedTokenizerFast"}};
  return j.dump(2) + "\n";
}

void WriteCharTokenizer(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  const fs::path tokenizer = fs::path(dir) / "tokenizer.json";
  const fs::path config = fs::path(dir) / "tokenizer_config.json";
  if (!fs::exists(tokenizer)) WriteTextFileAtomically(tokenizer.string(), CharTokenizerJson());
  if (!fs::exists(config)) WriteTextFileAtomically(config.string(), CharTokenizerConfigJson());
}

}  // namespace cemoe
