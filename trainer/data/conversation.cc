#include "trainer/data/conversation.h"

#include "model/check.h"
#include "model/json_file.h"

namespace cemoe {

bool IsKnownRole(const std::string& role) {
  return role == "system" || role == "user" || role == "assistant";
}

std::string CheckConversation(const std::vector<ChatMessage>& messages) {
  if (messages.empty()) return "the conversation has no messages";
  bool has_assistant = false;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!IsKnownRole(messages[i].role)) {
      return fmt::format(
          "message {} has role \"{}\"; expected \"system\", \"user\" or \"assistant\"", i,
          Excerpt(messages[i].role, 40));
    }
    has_assistant = has_assistant || messages[i].role == "assistant";
  }
  if (!has_assistant) return "the conversation has no assistant message to train on";
  return "";
}

std::vector<ChatMessage> FirstTurnOnly(const std::vector<ChatMessage>& messages) {
  std::vector<ChatMessage> out;
  size_t i = 0;
  for (; i < messages.size() && messages[i].role != "user"; ++i) {
    if (messages[i].role == "system") out.push_back(messages[i]);
  }
  if (i == messages.size()) return out;  // no user message
  out.push_back(messages[i]);
  for (++i; i < messages.size(); ++i) {
    if (messages[i].role == "assistant") {
      out.push_back(messages[i]);
      break;
    }
  }
  return out;
}

}  // namespace cemoe
