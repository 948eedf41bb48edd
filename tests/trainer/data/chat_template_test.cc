// chat_template_test.cc: trainer/data/chat_template.h: the built-ins rendered by hand (the
// expected strings are worked out from each template's source in the comments), template
// selection in a model folder, RenderForTraining's segments, the cache key and the errors.
// The comparison with transformers' apply_chat_template is tests/oracle/chat_template_oracle.py.
#include "trainer/data/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model/check.h"

namespace cemoe {

// Segments compare by text and flag (for EXPECT_EQ on vectors; found by argument lookup).
bool operator==(const ChatSegment& a, const ChatSegment& b) {
  return a.text == b.text && a.assistant == b.assistant;
}

namespace {

namespace fs = std::filesystem;
using Msgs = std::vector<ChatMessage>;
using Segs = std::vector<ChatSegment>;

const Msgs kSysUserAsst = {{"system", "S"}, {"user", "U"}, {"assistant", "A"}};
const Msgs kTwoTurns = {{"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}, {"assistant", "A2"}};

std::string ErrorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string Show(const Segs& segs) {
  std::string out;
  for (const auto& s : segs) out += (s.assistant ? "[A:" : "[N:") + s.text + "]";
  return out;
}

// tulu (OLMoE-Instruct): trim_blocks drops the "\n" after every %}; the "\n" after each }} stays.
// So a message is "<|role|>\n" + content + "\n" and an assistant one adds eos before its "\n";
// the generation prompt is "<|assistant|>" + "\n".
TEST(ChatTemplateTest, TuluByHand) {
  const auto t = ChatTemplate::Builtin("tulu", "<|endoftext|>", "<|endoftext|>");
  EXPECT_EQ(t.Render(kSysUserAsst, false),
            "<|endoftext|><|system|>\nS\n<|user|>\nU\n<|assistant|>\nA<|endoftext|>\n");
  EXPECT_EQ(t.Render({{"system", "S"}, {"user", "U"}}, true),
            "<|endoftext|><|system|>\nS\n<|user|>\nU\n<|assistant|>\n");
  EXPECT_EQ(t.Render(kTwoTurns, false),
            "<|endoftext|><|user|>\nU1\n<|assistant|>\nA1<|endoftext|>\n<|user|>\nU2\n"
            "<|assistant|>\nA2<|endoftext|>\n");
  // A last assistant message still gets the generation prompt after it (loop.last).
  EXPECT_EQ(t.Render({{"user", "U"}, {"assistant", "A"}}, true),
            "<|endoftext|><|user|>\nU\n<|assistant|>\nA<|endoftext|>\n<|assistant|>\n");
  // No bos_token: the template's {{ bos_token }} prints nothing.
  EXPECT_EQ(ChatTemplate::Builtin("tulu", "", "E").Render({{"user", "U"}}, false), "<|user|>\nU\n");
}

// phi3 (Phi-3.5-MoE-instruct): each message "<|role|>\n" + content + "<|end|>\n"; a system
// message with empty content is skipped; without the generation prompt the text ends in eos.
TEST(ChatTemplateTest, Phi3ByHand) {
  const auto t = ChatTemplate::Builtin("phi3", "<s>", "<|endoftext|>");
  EXPECT_EQ(t.Render(kSysUserAsst, false),
            "<|system|>\nS<|end|>\n<|user|>\nU<|end|>\n<|assistant|>\nA<|end|>\n<|endoftext|>");
  EXPECT_EQ(t.Render({{"system", "S"}, {"user", "U"}}, true),
            "<|system|>\nS<|end|>\n<|user|>\nU<|end|>\n<|assistant|>\n");
  EXPECT_EQ(t.Render({{"system", ""}, {"user", "U"}}, true), "<|user|>\nU<|end|>\n<|assistant|>\n");
  EXPECT_EQ(t.Render(kTwoTurns, false),
            "<|user|>\nU1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nU2<|end|>\n<|assistant|>\n"
            "A2<|end|>\n<|endoftext|>");
}

TEST(ChatTemplateTest, ChatmlByHand) {
  const auto t = ChatTemplate::Builtin("chatml", "", "");
  EXPECT_EQ(t.Render(kSysUserAsst, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
            "<|im_start|>assistant\nA<|im_end|>\n");
  EXPECT_EQ(t.Render({{"user", "U"}}, true),
            "<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
  // Contents go through untouched: unicode, template syntax, whitespace at the ends, empty.
  EXPECT_EQ(t.Render({{"user", " {{ x }} 日本 \n"}, {"assistant", ""}}, false),
            "<|im_start|>user\n {{ x }} 日本 \n<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n");
}

TEST(ChatTemplateTest, UnknownBuiltinListsTheKnownOnes) {
  const std::string e = ErrorOf([] { ChatTemplate::Builtin("llama9", "", ""); });
  EXPECT_NE(e.find("unknown built-in chat template 'llama9' (known: tulu, phi3, chatml, plain)"),
            std::string::npos)
      << e;
}

TEST(ChatTemplateTest, EmptyConversationIsRefused) {
  const auto t = ChatTemplate::Builtin("chatml", "", "");
  EXPECT_NE(ErrorOf([&] { t.Render({}, false); }).find("empty conversation"), std::string::npos);
}

// Segments, hand-checked: the assistant text is what its turn adds after the generation prompt.
TEST(ChatTemplateTest, TrainingSegmentsTulu) {
  const auto t = ChatTemplate::Builtin("tulu", "<|endoftext|>", "<|endoftext|>");
  const Segs want = {{"<|endoftext|><|user|>\nU1\n<|assistant|>\n", false},
                     {"A1<|endoftext|>\n", true},
                     {"<|user|>\nU2\n<|assistant|>\n", false},
                     {"A2<|endoftext|>\n", true}};
  const Segs got = t.RenderForTraining(kTwoTurns);
  EXPECT_EQ(got, want) << Show(got);
}

// phi3 writes eos only at the very end: the first turn ends at "<|end|>\n", the last one has eos.
TEST(ChatTemplateTest, TrainingSegmentsPhi3EndOfConversationEos) {
  const auto t = ChatTemplate::Builtin("phi3", "<s>", "<|endoftext|>");
  const Segs want = {{"<|user|>\nU1<|end|>\n<|assistant|>\n", false},
                     {"A1<|end|>\n", true},
                     {"<|user|>\nU2<|end|>\n<|assistant|>\n", false},
                     {"A2<|end|>\n<|endoftext|>", true}};
  const Segs got = t.RenderForTraining(kTwoTurns);
  EXPECT_EQ(got, want) << Show(got);
  // A conversation that ends with a user turn: its eos is non-assistant text.
  const Segs got2 = t.RenderForTraining({{"user", "U"}, {"assistant", "A"}, {"user", "V"}});
  const Segs want2 = {{"<|user|>\nU<|end|>\n<|assistant|>\n", false},
                      {"A<|end|>\n", true},
                      {"<|user|>\nV<|end|>\n<|endoftext|>", false}};
  EXPECT_EQ(got2, want2) << Show(got2);
}

TEST(ChatTemplateTest, TrainingSegmentsChatmlSystemAndFirstAssistant) {
  const auto t = ChatTemplate::Builtin("chatml", "", "");
  const Segs got = t.RenderForTraining({{"assistant", "hi"}, {"user", "U"}, {"assistant", ""}});
  // The empty assistant message still ends its turn: "<|im_end|>\n" is assistant text.
  const Segs want = {{"<|im_start|>assistant\n", false},
                     {"hi<|im_end|>\n", true},
                     {"<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n", false},
                     {"<|im_end|>\n", true}};
  EXPECT_EQ(got, want) << Show(got);
  // No assistant message: one non-assistant segment, the whole rendering.
  const Segs only_user = t.RenderForTraining({{"user", "U"}});
  ASSERT_EQ(only_user.size(), 1u);
  EXPECT_FALSE(only_user[0].assistant);
  EXPECT_EQ(only_user[0].text, t.Render({{"user", "U"}}, false));
}

// A template that rewrites earlier text when more messages follow cannot be split by prefixes.
TEST(ChatTemplateTest, TrainingRefusesATemplateThatRewritesEarlierText) {
  const auto t = ChatTemplate::FromSource(
      "{{ messages|length }}:{% for m in messages %}{{ m.content }};{% endfor %}"
      "{% if add_generation_prompt %}>{% endif %}",
      "counting", "", "");
  const std::string e = ErrorOf([&] { t.RenderForTraining(kTwoTurns); });
  EXPECT_NE(e.find("chat template counting: cannot find assistant message 1 for training"),
            std::string::npos)
      << e;
}

TEST(ChatTemplateTest, CacheKeyIsExactAndUnambiguous) {
  const auto a = ChatTemplate::FromSource("x", "w", "ab", "c");
  const auto b = ChatTemplate::FromSource("x", "other place", "a", "bc");
  const auto c = ChatTemplate::FromSource("x ", "w", "ab", "c");
  EXPECT_NE(a.CacheKey(), b.CacheKey());
  EXPECT_NE(a.CacheKey(), c.CacheKey());
  EXPECT_EQ(a.CacheKey(), ChatTemplate::FromSource("x", "elsewhere", "ab", "c").CacheKey());
  EXPECT_NE(a.CacheKey().find("x"), std::string::npos);
}

class ChatTemplateFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("cemoe_chat_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    fs::create_directories((dir_ / name).parent_path());
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  fs::path dir_;
};

TEST_F(ChatTemplateFolderTest, ConfigStringAndTokenForms) {
  Write(
      "tokenizer_config.json",
      R"({"chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}",
            "bos_token": {"__type": "AddedToken", "content": "<B>"}, "eos_token": "<E>"})");
  const auto t = ChatTemplate::FromModelFolder(dir_.string());
  EXPECT_EQ(t.Render({{"user", "x"}}, false), "<B>x<E>");
  EXPECT_EQ(t.bos_token(), "<B>");
  EXPECT_NE(t.where().find("tokenizer_config.json"), std::string::npos);
}

// transformers 5: chat_template.jinja wins over the config's string; one trailing newline of the
// file is dropped by Jinja (keep_trailing_newline=False).
TEST_F(ChatTemplateFolderTest, JinjaFileWinsOverConfig) {
  Write("tokenizer_config.json", R"({"chat_template": "CONFIG", "eos_token": null})");
  Write("chat_template.jinja", "JINJA {{ messages[0].content }}\n");
  const auto t = ChatTemplate::FromModelFolder(dir_.string());
  EXPECT_EQ(t.Render({{"user", "x"}}, false), "JINJA x");
  EXPECT_NE(t.where().find("chat_template.jinja"), std::string::npos);
}

TEST_F(ChatTemplateFolderTest, ConfigListUsesDefault) {
  Write("tokenizer_config.json",
        R"({"chat_template": [{"name": "tool_use", "template": "TOOLS"},
                              {"name": "default", "template": "DEFAULT"}]})");
  EXPECT_EQ(ChatTemplate::FromModelFolder(dir_.string()).Render({{"user", "x"}}, false), "DEFAULT");
  Write("tokenizer_config.json", R"({"chat_template": [{"name": "tool_use", "template": "T"}]})");
  const std::string e = ErrorOf([&] { ChatTemplate::FromModelFolder(dir_.string()); });
  EXPECT_NE(e.find("none named \"default\""), std::string::npos) << e;
}

TEST_F(ChatTemplateFolderTest, NoTemplateNamesTheFolder) {
  Write("tokenizer_config.json", R"({"eos_token": "<E>"})");
  const std::string e = ErrorOf([&] { ChatTemplate::FromModelFolder(dir_.string()); });
  EXPECT_NE(e.find(dir_.string() + " has no chat template"), std::string::npos) << e;
}

TEST_F(ChatTemplateFolderTest, BadTokenFieldIsNamed) {
  Write("tokenizer_config.json", R"({"chat_template": "x", "bos_token": 7})");
  const std::string e = ErrorOf([&] { ChatTemplate::FromModelFolder(dir_.string()); });
  EXPECT_NE(e.find("\"bos_token\" must be a string"), std::string::npos) << e;
}

}  // namespace
}  // namespace cemoe
