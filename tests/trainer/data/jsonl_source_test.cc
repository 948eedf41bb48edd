// jsonl_source_test.cc: trainer/data/jsonl_source.h and conversation.h on hand-written JSONL files
// of each format and field mapping (Tulu 3 messages, prompt/completion, MathInstruct's
// instruction/output, Magicoder's instruction/response), first_turn_only, bad lines (error text
// with FILE:LINE, or skipped and counted), a missing file, empty lines, huge and deep lines.
#include "trainer/data/jsonl_source.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model/check.h"
#include "tests/trainer/data/data_test_util.h"
#include "trainer/data/conversation.h"

namespace cemoe {

// For comparing conversations (ChatMessage has no operator== of its own); found by ADL.
bool operator==(const ChatMessage& a, const ChatMessage& b) {
  return a.role == b.role && a.content == b.content;
}

namespace {

using test::TempDir;
using test::WriteFile;
using ::testing::HasSubstr;
using Conversation = std::vector<ChatMessage>;

struct ReadResult {
  std::vector<Conversation> conversations;
  std::vector<int64_t> line_numbers;
  JsonlReadStats stats;
};

ReadResult Read(const DataSource& source, bool first_turn_only = false, bool skip = false) {
  ReadResult r;
  r.stats = ReadJsonlConversations(ResolveSourceFields(source, 0), first_turn_only, skip,
                                   [&](const Conversation& c, int64_t line) {
                                     r.conversations.push_back(c);
                                     r.line_numbers.push_back(line);
                                     return std::string();
                                   });
  return r;
}

// The error text of reading, or "" when it reads.
std::string ReadError(const DataSource& source, bool first_turn_only = false) {
  try {
    Read(source, first_turn_only);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

DataSource Source(const std::string& path, const std::string& format) {
  DataSource s;
  s.path = path;
  s.format = format;
  return s;
}

TEST(JsonlSource, MessagesFormatAsTulu3) {
  TempDir dir;
  const std::string path = dir / "tulu.jsonl";
  // Tulu 3 lines carry "id" and "source" beside "messages"; messages may carry extra keys.
  WriteFile(
      path,
      R"({"id": "a", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "source": "x"})"
      "\n"
      R"({"id": "b", "messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "q1", "extra": 1}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]})"
      "\n");
  const ReadResult r = Read(Source(path, "messages"));
  ASSERT_EQ(r.conversations.size(), 2u);
  EXPECT_EQ(r.conversations[0], (Conversation{{"user", "hi"}, {"assistant", "yo"}}));
  EXPECT_EQ(r.conversations[1], (Conversation{{"system", "be nice"},
                                              {"user", "q1"},
                                              {"assistant", "a1"},
                                              {"user", "q2"},
                                              {"assistant", "a2"}}));
  EXPECT_EQ(r.line_numbers, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(r.stats.lines, 2);
  EXPECT_EQ(r.stats.conversations, 2);
  EXPECT_EQ(r.stats.skipped_lines, 0);

  // A renamed field through messages_field.
  const std::string conv = dir / "conv.jsonl";
  WriteFile(
      conv,
      R"({"conversation": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "v"}]})");
  DataSource s = Source(conv, "messages");
  s.messages_field = "conversation";
  EXPECT_EQ(Read(s).conversations.at(0), (Conversation{{"user", "u"}, {"assistant", "v"}}));
  EXPECT_THAT(ReadError(Source(conv, "messages")),
              HasSubstr("conv.jsonl:1: missing field \"messages\" (data.train[0].messages_field)"));
}

TEST(JsonlSource, PromptCompletionAndInstructionDefaultsAndMappings) {
  TempDir dir;
  const std::string pc = dir / "pc.jsonl";
  WriteFile(pc, R"({"prompt": "2+2?", "completion": "4"})"
                "\n");
  EXPECT_EQ(Read(Source(pc, "prompt_completion")).conversations.at(0),
            (Conversation{{"user", "2+2?"}, {"assistant", "4"}}));

  // MathInstruct: instruction / output (the instruction format's defaults), plus "source".
  const std::string math = dir / "math.jsonl";
  WriteFile(
      math,
      R"({"source": "data/CoT/gsm_rft.json", "output": "It is 4.", "instruction": "What is 2+2?"})"
      "\n");
  EXPECT_EQ(Read(Source(math, "instruction")).conversations.at(0),
            (Conversation{{"user", "What is 2+2?"}, {"assistant", "It is 4."}}));

  // Magicoder-Evol-Instruct: instruction / response through completion_field.
  const std::string magic = dir / "magic.jsonl";
  WriteFile(magic, R"({"instruction": "Write f", "response": "def f(): pass"})"
                   "\n");
  DataSource m = Source(magic, "instruction");
  EXPECT_THAT(ReadError(m), HasSubstr("magic.jsonl:1: missing field \"output\" "
                                      "(data.train[0].completion_field)"));
  m.completion_field = "response";
  EXPECT_EQ(Read(m).conversations.at(0),
            (Conversation{{"user", "Write f"}, {"assistant", "def f(): pass"}}));

  // system_field: present -> a leading system message; missing, null or "" -> none.
  const std::string sys = dir / "sys.jsonl";
  WriteFile(sys, R"({"q": "a", "r": "b", "sys": "S"})"
                 "\n"
                 R"({"q": "c", "r": "d"})"
                 "\n"
                 R"({"q": "e", "r": "f", "sys": null})"
                 "\n"
                 R"({"q": "g", "r": "h", "sys": ""})"
                 "\n");
  DataSource s = Source(sys, "prompt_completion");
  s.prompt_field = "q";
  s.completion_field = "r";
  s.system_field = "sys";
  const ReadResult r = Read(s);
  ASSERT_EQ(r.conversations.size(), 4u);
  EXPECT_EQ(r.conversations[0], (Conversation{{"system", "S"}, {"user", "a"}, {"assistant", "b"}}));
  EXPECT_EQ(r.conversations[1], (Conversation{{"user", "c"}, {"assistant", "d"}}));
  EXPECT_EQ(r.conversations[2].size(), 2u);
  EXPECT_EQ(r.conversations[3].size(), 2u);
  WriteFile(sys, R"({"q": "a", "r": "b", "sys": 5})"
                 "\n");
  EXPECT_THAT(ReadError(s), HasSubstr("sys.jsonl:1: field \"sys\" (data.train[0].system_field) "
                                      "must be a string, got 5"));
}

// Pretraining documents: {"text": ...} -> one assistant message; another key via completion_field.
TEST(JsonlSource, TextFormatIsOneAssistantMessage) {
  TempDir dir;
  const std::string docs = dir / "docs.jsonl";
  WriteFile(docs, R"({"text": "Once upon a time."})"
                  "\n"
                  R"({"body": "x"})"
                  "\n");
  const ReadResult r = Read(Source(docs, "text"), /*first_turn_only=*/false, /*skip=*/true);
  ASSERT_EQ(r.conversations.size(), 1u);
  EXPECT_EQ(r.conversations[0], (Conversation{{"assistant", "Once upon a time."}}));
  EXPECT_THAT(ReadError(Source(docs, "text")),
              HasSubstr("docs.jsonl:2: missing field \"text\" (data.train[0].completion_field)"));
}

TEST(JsonlSource, ResolveSourceFieldsDefaultsAndBadFormat) {
  DataSource s = Source("x.jsonl", "instruction");
  SourceFields f = ResolveSourceFields(s, 3);
  EXPECT_EQ(f.prompt_field, "instruction");
  EXPECT_EQ(f.completion_field, "output");
  EXPECT_EQ(f.recipe_field, "data.train[3]");
  s.format = "prompt_completion";
  f = ResolveSourceFields(s, 0);
  EXPECT_EQ(f.prompt_field, "prompt");
  EXPECT_EQ(f.completion_field, "completion");
  s.format = "text";
  f = ResolveSourceFields(s, 0);
  EXPECT_EQ(f.completion_field, "text");
  s.format = "csv";
  try {
    ResolveSourceFields(s, 2);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("data.train[2].format (\"csv\") must be \"messages\", "
                                    "\"prompt_completion\", \"instruction\" or \"text\""));
  }
}

TEST(JsonlSource, FirstTurnOnlyKeepsLeadingSystemFirstUserAndFirstAssistantAfterIt) {
  // Hand-worked: [assistant a0, system s, user u1, user u2, assistant a1, user u3, assistant a2]
  // -> [system s, user u1, assistant a1]: a0 comes before any user, u2 is not the first user.
  const Conversation in = {{"assistant", "a0"}, {"system", "s"}, {"user", "u1"},     {"user", "u2"},
                           {"assistant", "a1"}, {"user", "u3"},  {"assistant", "a2"}};
  EXPECT_EQ(FirstTurnOnly(in),
            (Conversation{{"system", "s"}, {"user", "u1"}, {"assistant", "a1"}}));
  // A system message after the first user message is not leading: dropped.
  EXPECT_EQ(FirstTurnOnly({{"user", "u"}, {"system", "s"}, {"assistant", "a"}}),
            (Conversation{{"user", "u"}, {"assistant", "a"}}));
  // No assistant after the first user: nothing to train on (CheckConversation rejects it).
  EXPECT_EQ(FirstTurnOnly({{"assistant", "a"}, {"user", "u"}}), (Conversation{{"user", "u"}}));
  EXPECT_NE(CheckConversation(FirstTurnOnly({{"assistant", "a"}, {"user", "u"}})), "");

  TempDir dir;
  const std::string path = dir / "multi.jsonl";
  WriteFile(
      path,
      R"({"messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]})"
      "\n"
      R"({"messages": [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "q"}]})"
      "\n");
  EXPECT_EQ(Read(Source(path, "messages"), true, true).conversations,
            (std::vector<Conversation>{{{"user", "q1"}, {"assistant", "a1"}}}));
  EXPECT_THAT(ReadError(Source(path, "messages"), true),
              HasSubstr("multi.jsonl:2: the conversation has no assistant message to train on "
                        "(after data.first_turn_only)"));
  // Without the option line 2 is still trainable (it has an assistant message).
  EXPECT_EQ(Read(Source(path, "messages")).conversations.size(), 2u);
}

TEST(JsonlSource, BadLinesNameFileLineAndField) {
  TempDir dir;
  const std::string path = dir / "bad.jsonl";
  auto error_of = [&](const std::string& line3, const std::string& format = "messages") {
    const std::string line1 =
        format == "messages"
            ? R"({"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]})"
            : R"({"prompt": "u", "completion": "a"})";
    WriteFile(path, line1 + "\n\n" + line3 + "\n");
    return ReadError(Source(path, format));
  };
  const std::string where = path + ":3: ";
  EXPECT_THAT(error_of("{not json"), HasSubstr(where + "invalid JSON"));
  EXPECT_THAT(error_of("[1, 2]"), HasSubstr(where + "expected a JSON object per line, got [1, 2]"));
  EXPECT_THAT(error_of(R"({"messages": "hi"})"),
              HasSubstr(where + "field \"messages\" (data.train[0].messages_field) must be a list "
                                "of {role, content}, got \"hi\""));
  EXPECT_THAT(error_of(R"({"messages": [{"role": "bot", "content": "x"}]})"),
              HasSubstr(where + "\"messages\"[0].role is \"bot\"; expected \"system\", \"user\" "
                                "or \"assistant\""));
  EXPECT_THAT(error_of(R"({"messages": [{"role": "user", "content": 7}]})"),
              HasSubstr(where + "\"messages\"[0].content must be a string, got 7"));
  EXPECT_THAT(
      error_of(R"({"messages": [{"role": "user"}]})"),
      HasSubstr(where + "\"messages\"[0].content must be a string, got {\"role\": \"user\"}"));
  EXPECT_THAT(error_of(R"({"messages": [3]})"),
              HasSubstr(where + "\"messages\"[0] must be an object {role, content}, got 3"));
  EXPECT_THAT(error_of(R"({"messages": [{"role": "user", "content": "only a question"}]})"),
              HasSubstr(where + "the conversation has no assistant message to train on"));
  EXPECT_THAT(error_of(R"({"messages": []})"),
              HasSubstr(where + "the conversation has no messages"));
  EXPECT_THAT(error_of(R"({"prompt": "p", "completion": ["c"]})", "prompt_completion"),
              HasSubstr(where + "field \"completion\" (data.train[0].completion_field) must be a "
                                "string, got [\"c\"]"));
  EXPECT_THAT(error_of(R"({"completion": "c"})", "prompt_completion"),
              HasSubstr(where + "missing field \"prompt\" (data.train[0].prompt_field): "
                                "{\"completion\": \"c\"}"));
  // Invalid UTF-8 inside a string is invalid JSON.
  EXPECT_THAT(error_of("{\"messages\": \"\xff\"}"), HasSubstr(where + "invalid JSON"));
}

TEST(JsonlSource, SkipModeCountsBadLinesPerFile) {
  TempDir dir;
  const std::string path = dir / "mixed.jsonl";
  WriteFile(path, R"({"prompt": "a", "completion": "b"})"
                  "\n"
                  "{oops\n"
                  R"({"prompt": "c"})"
                  "\n"
                  "\n"
                  "   \r\n"
                  R"({"prompt": "e", "completion": "f"})"
                  "\r\n");
  const ReadResult r = Read(Source(path, "prompt_completion"), false, /*skip=*/true);
  EXPECT_EQ(r.stats.lines, 4);  // two empty lines ignored
  EXPECT_EQ(r.stats.conversations, 2);
  EXPECT_EQ(r.stats.skipped_lines, 2);
  EXPECT_THAT(r.stats.first_skip, HasSubstr(path + ":2: invalid JSON"));
  EXPECT_EQ(r.line_numbers, (std::vector<int64_t>{1, 6}));
  EXPECT_EQ(r.conversations[1], (Conversation{{"user", "e"}, {"assistant", "f"}}));
  // Error mode stops at line 2.
  EXPECT_THAT(ReadError(Source(path, "prompt_completion")), HasSubstr(path + ":2: invalid JSON"));
}

TEST(JsonlSource, SinkRejectionIsABadLine) {
  TempDir dir;
  const std::string path = dir / "two.jsonl";
  WriteFile(path, R"({"prompt": "a", "completion": "b"})"
                  "\n"
                  R"({"prompt": "c", "completion": "d"})"
                  "\n");
  const SourceFields f = ResolveSourceFields(Source(path, "prompt_completion"), 0);
  auto reject_second = [](const Conversation& c, int64_t line) {
    return line == 2 ? std::string("template refused it") : std::string();
  };
  const JsonlReadStats s = ReadJsonlConversations(f, false, true, reject_second);
  EXPECT_EQ(s.conversations, 1);
  EXPECT_EQ(s.skipped_lines, 1);
  EXPECT_EQ(s.first_skip, path + ":2: template refused it");
  try {
    ReadJsonlConversations(f, false, false, reject_second);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + ":2: template refused it"));
  }
}

TEST(JsonlSource, MissingFileNamesTheRecipeField) {
  TempDir dir;
  DataSource s = Source(dir / "nope.jsonl", "messages");
  const SourceFields f = ResolveSourceFields(s, 1);
  try {
    ReadJsonlConversations(f, false, false, [](const Conversation&, int64_t) { return ""; });
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("data.train[1].path: cannot open '" + dir / "nope.jsonl" +
                                    "': no such file"));
  }
  // A folder is not a data file.
  s.path = dir.path();
  EXPECT_THAT(ReadError(s), HasSubstr("data.train[0].path: cannot open '" + dir.path() +
                                      "': not a regular file"));
}

TEST(JsonlSource, HugeAndDeepLinesDoNotCrash) {
  TempDir dir;
  const std::string path = dir / "huge.jsonl";
  const std::string big(8 << 20, 'x');  // an 8 MiB completion
  WriteFile(path, R"({"prompt": "p", "completion": ")" + big + "\"}\n");
  const ReadResult r = Read(Source(path, "prompt_completion"));
  ASSERT_EQ(r.conversations.size(), 1u);
  EXPECT_EQ(r.conversations[0][1].content.size(), big.size());

  // 100000 nested arrays: rejected by the depth check before the parser recurses.
  WriteFile(path, R"({"prompt": )" + std::string(100000, '[') + std::string(100000, ']') + "}\n");
  EXPECT_THAT(ReadError(Source(path, "prompt_completion")),
              HasSubstr(path + ":1: invalid JSON: arrays and objects nested deeper than 128"));
  // A huge bad line is quoted as a short excerpt.
  WriteFile(path, R"({"completion": ")" + big + "\"}\n");
  const std::string e = ReadError(Source(path, "prompt_completion"));
  EXPECT_THAT(e, HasSubstr("missing field \"prompt\""));
  EXPECT_LT(e.size(), 1000u);
}

}  // namespace
}  // namespace cemoe
