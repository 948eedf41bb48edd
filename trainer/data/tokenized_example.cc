#include "trainer/data/tokenized_example.h"

#include <limits>

#include "model/check.h"

namespace cemoe {

TokenizedExample TokenizeConversation(const std::vector<ChatMessage>& messages,
                                      const ChatRenderer& renderer, const Tokenizer& tokenizer,
                                      const TokenizeOptions& options) {
  CEMOE_CHECK(options.max_length >= 2, "data.max_length ({}) must be at least 2",
              options.max_length);
  TokenizedExample ex;
  for (const ChatSegment& segment : renderer.RenderForTraining(messages)) {
    if (segment.text.empty()) continue;
    const std::vector<int64_t> ids = tokenizer.Encode(segment.text);
    const uint8_t mask = (segment.assistant || options.train_on_prompt) ? 1 : 0;
    for (int64_t id : ids) {
      CEMOE_CHECK(id >= 0 && id <= std::numeric_limits<int32_t>::max(),
                  "token id {} does not fit the token cache's int32", id);
      ex.tokens.push_back(static_cast<int32_t>(id));
      ex.loss_mask.push_back(mask);
    }
  }
  if (static_cast<int64_t>(ex.tokens.size()) > options.max_length) {
    ex.truncated = true;
    ex.tokens.resize(options.max_length);
    ex.loss_mask.resize(options.max_length);
  }
  if (!ex.loss_mask.empty()) ex.loss_mask[0] = 0;
  for (uint8_t m : ex.loss_mask) ex.num_loss_tokens += m;
  return ex;
}

}  // namespace cemoe
