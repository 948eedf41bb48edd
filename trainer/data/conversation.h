// conversation.h: the rules a training conversation (a list of ChatMessage, trainer/data/chat.h)
// must follow, and the first-turn cut of the paper's Tulu 3 recipe (data.first_turn_only).
//
//   CheckConversation(messages)  "" when the conversation can be trained on, else why not:
//                                every role is "system", "user" or "assistant" and at least one
//                                message is the assistant's (the loss needs assistant tokens).
//   FirstTurnOnly(messages)      the system messages before the first user message, the first
//                                user message, and the first assistant message after it; nothing
//                                else. Throws nothing: a conversation without a user message
//                                followed by an assistant message comes back without an
//                                assistant turn, which CheckConversation then rejects.
//
// Why keep the leading system messages: the system prompt is part of the first exchange's
// context (what the assistant answered to), and dropping it would train the first answer
// against a prompt it was not written for. Tulu 3's mixture has few system messages, so the cut
// is mostly "first user + first assistant" (docs/data.md, "first_turn_only").
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include "trainer/data/chat.h"

namespace cemoe {

// Whether `role` is one of "system", "user", "assistant".
bool IsKnownRole(const std::string& role);

std::string CheckConversation(const std::vector<ChatMessage>& messages);

std::vector<ChatMessage> FirstTurnOnly(const std::vector<ChatMessage>& messages);

}  // namespace cemoe
