// chat.h: the seam between chat templates (trainer/data/chat_template.h) and the SFT data
// pipeline (trainer/data/): a conversation in, the rendered text out in pieces that say which
// characters are the model's own (assistant) turns, so the loss can be restricted to them.
// Thread-safety: implementations are immutable after construction; Render* may run concurrently.
#pragma once

#include <string>
#include <vector>

namespace cemoe {

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};

// One piece of the rendered conversation. Concatenating every piece's text gives exactly
// Render(messages, /*add_generation_prompt=*/false). `assistant` marks the text an assistant turn
// adds after the generation prompt (its content and the end-of-turn marks the template writes
// after it: what the model must learn to produce); everything else (system and user turns, role
// headers, the generation prompt itself) has assistant == false.
struct ChatSegment {
  std::string text;
  bool assistant = false;
};

class ChatRenderer {
 public:
  virtual ~ChatRenderer() = default;
  // The whole conversation as text (as transformers' apply_chat_template(tokenize=False)).
  virtual std::string Render(const std::vector<ChatMessage>& messages,
                             bool add_generation_prompt) const = 0;
  // The same text in pieces, see ChatSegment.
  virtual std::vector<ChatSegment> RenderForTraining(
      const std::vector<ChatMessage>& messages) const = 0;
  // Identifies the rendering exactly (template source and special tokens): part of the key of
  // the tokenized-data cache, so a changed template never reuses stale tokens.
  virtual std::string CacheKey() const = 0;
};

}  // namespace cemoe
