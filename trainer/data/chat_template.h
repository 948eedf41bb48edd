// chat_template.h: Hugging Face chat templates for SFT data: a conversation rendered exactly as
// transformers' tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)
// renders it, by cemoe's own Jinja interpreter (trainer/data/jinja_*.h; supported subset:
// docs/chat-templates.md).
//
//   ChatTemplate t = ChatTemplate::FromModelFolder("runs/olmoe-instruct");
//   ChatTemplate t = ChatTemplate::Builtin("tulu", "<|endoftext|>", "<|endoftext|>");
//   std::string text = t.Render(messages, /*add_generation_prompt=*/false);
//   std::vector<ChatSegment> pieces = t.RenderForTraining(messages);  // loss mask by segment
//
// Where the template comes from (FromModelFolder, as transformers 5.23's from_pretrained):
// DIR/chat_template.jinja wins over tokenizer_config.json "chat_template" (a string, or a list
// of {"name", "template"} of which "default" is used); DIR/additional_chat_templates/*.jinja are
// named templates (a "default.jinja" there wins over chat_template.jinja). bos_token / eos_token
// come from tokenizer_config.json (a string or {"content": ...}), overridden by
// special_tokens_map.json when the config has no "added_tokens_decoder" (transformers' legacy
// path). An empty or missing token is not set (the template sees it undefined, as in
// transformers when the tokenizer has none).
//
// RenderForTraining (open-instruct's loss-masking rule): for each assistant message i, its text
// is Render(messages[:i+1], false) minus the prefix Render(messages[:i], true), i.e. what the
// assistant turn adds after the generation prompt; everything else is non-assistant. Templates
// that end the conversation with eos_token (phi3: "{% else %}{{ eos_token }}") write that eos
// only after the last message, so an assistant turn that is not last ends before it. Any other
// disagreement (a template that rewrites earlier text) throws naming the template and message.
// Thread-safety: immutable after construction; Render* may run concurrently.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "trainer/data/chat.h"
#include "trainer/data/jinja_eval.h"

namespace cemoe {

class ChatTemplate : public ChatRenderer {
 public:
  // The model folder's template and special tokens (see above); no template -> error naming
  // the folder.
  static ChatTemplate FromModelFolder(const std::string& dir);
  // A named built-in ("tulu", "phi3", "chatml": BuiltinNames()); unknown -> error listing them.
  static ChatTemplate Builtin(const std::string& name, std::string bos_token,
                              std::string eos_token);
  // Any template source; `where` names it in errors.
  static ChatTemplate FromSource(std::string jinja_source, std::string where, std::string bos_token,
                                 std::string eos_token);
  static std::vector<std::string> BuiltinNames();

  std::string Render(const std::vector<ChatMessage>& messages,
                     bool add_generation_prompt) const override;
  std::vector<ChatSegment> RenderForTraining(
      const std::vector<ChatMessage>& messages) const override;
  // The template source, bos_token and eos_token, length-prefixed (so distinct triples never
  // give the same key).
  std::string CacheKey() const override;

  const std::string& source() const { return state_->source; }
  const std::string& where() const { return state_->where; }
  const std::string& bos_token() const { return state_->bos_token; }
  const std::string& eos_token() const { return state_->eos_token; }

 private:
  struct State {
    std::string source;
    std::string where;
    std::string bos_token;
    std::string eos_token;
    jinja::Template compiled;
  };
  explicit ChatTemplate(std::shared_ptr<const State> state) : state_(std::move(state)) {}
  // The first `count` of `messages` (jinja dicts {"role", "content"}) rendered; count may be 0,
  // which Render itself refuses as transformers does.
  std::string RenderPrefix(const jinja::List& messages, size_t count,
                           bool add_generation_prompt) const;

  std::shared_ptr<const State> state_;
};

// A special token ("bos_token", "eos_token", "pad_token", ...) of a model folder, as
// FromModelFolder reads bos and eos: tokenizer_config.json (a string or {"content": ...}),
// overridden by special_tokens_map.json when the config has no added_tokens_decoder (as
// transformers 5.23 loads them). "" when neither file sets it.
std::string ModelSpecialToken(const std::string& dir, const char* key);

}  // namespace cemoe
