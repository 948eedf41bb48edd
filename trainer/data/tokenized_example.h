// tokenized_example.h: a conversation into token ids and a loss mask, the unit the token cache
// stores (trainer/data/token_cache.h).
//
// The chat template renders the conversation in pieces (ChatRenderer::RenderForTraining,
// trainer/data/chat.h); each piece is encoded on its own with Tokenizer::Encode (no special
// tokens added: the template writes them) and the ids are concatenated. So a token never spans
// an assistant boundary; where a template would let BPE merge across one, the ids can differ
// from encoding the whole text at once (harmless for training: both decode to the same text).
//
// Loss mask: 1 on the tokens of assistant pieces (every token with train_on_prompt), 0 elsewhere;
// the first token's mask is always 0, since nothing before it predicts it. So the number of ones
// is the number of loss tokens (targets) the example gives.
// Truncation: an example longer than max_length keeps its first max_length tokens (counted as
// truncated). An example with no loss token left (an assistant turn cut off entirely, an empty
// rendering) is dropped (counted).
// Thread-safety: pure functions (the renderer and tokenizer are thread-safe).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/data/chat.h"
#include "trainer/tokenizer/tokenizer.h"

namespace cemoe {

struct TokenizedExample {
  std::vector<int32_t> tokens;     // [T], T <= max_length
  std::vector<uint8_t> loss_mask;  // [T], 0 or 1; loss_mask[0] == 0
  bool truncated = false;          // had more than max_length tokens before the cut
  int64_t num_loss_tokens = 0;     // ones in loss_mask; 0 = the example is to be dropped
};

struct TokenizeOptions {
  int64_t max_length = 4096;     // data.max_length
  bool train_on_prompt = false;  // data.train_on_prompt
};

// Throws cemoe::Error when the renderer or the tokenizer does, when an id does not fit int32, or
// when max_length < 2 (no example could have a target).
TokenizedExample TokenizeConversation(const std::vector<ChatMessage>& messages,
                                      const ChatRenderer& renderer, const Tokenizer& tokenizer,
                                      const TokenizeOptions& options);

}  // namespace cemoe
