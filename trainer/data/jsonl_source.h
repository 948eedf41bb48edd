// jsonl_source.h: one training JSONL file (a DataSource of the recipe, trainer/config/run_config.h)
// read line by line into conversations (ChatMessage lists, trainer/data/chat.h).
//
// Formats (DataSource::format) and the fields each line must have (names from the recipe, or
// these defaults):
//   "messages"           messages_field ("messages"): a list of {"role", "content"} objects,
//                        roles "system" | "user" | "assistant" (Tulu 3's `messages`); other keys
//                        of a message are ignored.
//   "prompt_completion"  prompt_field ("prompt") and completion_field ("completion"): strings.
//   "instruction"        prompt_field ("instruction") and completion_field ("output";
//                        Magicoder's is "response"): strings.
// Both non-chat formats take an optional system_field (a string; a line without it, or with null
// or "", has no system message) and become [system?, user, assistant]. Other keys of a line are
// ignored. data.first_turn_only applies FirstTurnOnly (trainer/data/conversation.h) to every
// conversation. A conversation must pass CheckConversation (known roles, an assistant message).
//
// A bad line (invalid JSON, nesting deeper than kMaxJsonDepth, a missing or ill-typed field, a bad
// role, no assistant message, or a reason the caller's callback gives) is an error
// "FILE:LINE: what, naming the field: excerpt of the line"; with skip_bad_lines it is counted and
// skipped instead. Empty (whitespace-only) lines are ignored; "\r\n" line ends are accepted.
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "trainer/config/run_config.h"
#include "trainer/data/chat.h"

namespace cemoe {

// A DataSource with the defaults of its format filled in; `recipe_field` names it in errors
// ("data.train[0]").
struct SourceFields {
  std::string path;
  std::string format;
  std::string messages_field;
  std::string prompt_field;
  std::string completion_field;
  std::string system_field;  // "" = none
  std::string recipe_field;
};

// Fills the defaults and checks the format ("data.train[0].format ("csv") must be one of ...").
SourceFields ResolveSourceFields(const DataSource& source, size_t index);

// One line's JSON text into a conversation (first_turn_only applied, CheckConversation passed).
// Throws cemoe::Error "<where>: <reason>" for a bad line; `where` is "FILE:LINE".
std::vector<ChatMessage> ParseConversationLine(std::string_view line, const SourceFields& fields,
                                               bool first_turn_only, const std::string& where);

struct JsonlReadStats {
  int64_t lines = 0;          // non-empty lines
  int64_t conversations = 0;  // lines handed to the callback and accepted by it
  int64_t skipped_lines = 0;  // bad lines skipped (skip_bad_lines)
  std::string first_skip;     // the first skipped line's error, for the log ("" when none)
};

// Called for each good line with its conversation and 1-based line number; returns "" to accept
// it or the reason the line is bad (e.g. the chat template rejected it), which is then treated
// as any other bad line.
using ConversationSink =
    std::function<std::string(const std::vector<ChatMessage>& messages, int64_t line)>;

// Reads the whole file. A file that cannot be opened is an error naming `fields.recipe_field`
// ".path" and the path.
JsonlReadStats ReadJsonlConversations(const SourceFields& fields, bool first_turn_only,
                                      bool skip_bad_lines, const ConversationSink& sink);

}  // namespace cemoe
