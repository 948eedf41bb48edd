// char_tokenizer.h: the tokenizer files `cemoe init` writes next to a tiny or small model, so
// that the whole pipeline (chat data, training, export, transformers' from_pretrained) runs on
// a model built here, without downloads.
//
// A Hugging Face tokenizer.json with a BPE model and no merges over single characters: every
// printable ASCII character, tab and newline is one token; any other character is <unk>.
// Ids: 0 <|pad|>, 1 <|endoftext|> (bos), 2 <|im_end|> (eos), 3 <|im_start|>, 4 <unk>, 5 "\t",
// 6 "\n", then ' ' .. '~' as 7 .. 101; 102 ids in all, within the tiny presets' 128. The special
// tokens are added tokens, so "<|im_start|>" in text is one token. tokenizer_config.json names
// bos/eos/pad/unk and carries the ChatML chat template (trainer/data/chat_template.h "chatml").
// Torch-free. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>

namespace cemoe {

inline constexpr int64_t kCharTokenizerVocab = 102;

std::string CharTokenizerJson();
std::string CharTokenizerConfigJson();
// Writes tokenizer.json and tokenizer_config.json into `dir` (atomically, file by file); a file
// that is already there is left as it is (a user's tokenizer is never replaced).
void WriteCharTokenizer(const std::string& dir);

}  // namespace cemoe
