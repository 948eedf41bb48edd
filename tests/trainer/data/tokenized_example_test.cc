// tokenized_example_test.cc: trainer/data/tokenized_example.h with the character-level tokenizer
// and the test renderer of data_test_util.h, whose ids are worked out by hand below.
#include "trainer/data/tokenized_example.h"

#include <gtest/gtest.h>

#include "model/check.h"
#include "trainer/data/chat_template.h"
#include "tests/trainer/data/data_test_util.h"

namespace cemoe {
namespace {

using test::Id;
using test::kAssistantId;
using test::kEndId;
using test::kSystemId;
using test::kUserId;

class TokenizedExampleTest : public ::testing::Test {
 protected:
  test::TempDir dir_;
  Tokenizer tok_ = test::WriteCharTokenizer(dir_ / "tokenizer.json");
  test::TestRenderer renderer_;
};

std::vector<int64_t> Widen(const std::vector<int32_t>& v) { return {v.begin(), v.end()}; }
std::vector<int> Mask(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }

TEST_F(TokenizedExampleTest, MasksAssistantTokensOnly) {
  // "<|user|>\nhi\n" | "<|assistant|>\n" | "yo<|end|>" (assistant) | "\n"
  const std::vector<ChatMessage> conv = {{"user", "hi"}, {"assistant", "yo"}};
  const TokenizedExample ex = TokenizeConversation(conv, renderer_, tok_, {4096, false});
  const int64_t nl = Id('\n');
  EXPECT_EQ(Widen(ex.tokens), (std::vector<int64_t>{kUserId, nl, Id('h'), Id('i'), nl, kAssistantId,
                                                    nl, Id('y'), Id('o'), kEndId, nl}));
  EXPECT_EQ(Mask(ex.loss_mask), (std::vector<int>{0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0}));
  EXPECT_EQ(ex.num_loss_tokens, 3);
  EXPECT_FALSE(ex.truncated);

  // Two turns and a system message: both assistant turns are trained on.
  const std::vector<ChatMessage> conv2 = {
      {"system", "s"}, {"user", "a"}, {"assistant", "b"}, {"user", "c"}, {"assistant", "d"}};
  const TokenizedExample ex2 = TokenizeConversation(conv2, renderer_, tok_, {4096, false});
  EXPECT_EQ(
      Widen(ex2.tokens),
      (std::vector<int64_t>{kSystemId, nl,      Id('s'), nl, kUserId, nl, Id('a'), nl, kAssistantId,
                            nl,        Id('b'), kEndId,  nl, kUserId, nl, Id('c'), nl, kAssistantId,
                            nl,        Id('d'), kEndId,  nl}));
  EXPECT_EQ(Mask(ex2.loss_mask),
            (std::vector<int>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0}));
}

TEST_F(TokenizedExampleTest, TrainOnPromptMasksEverythingButTheFirstToken) {
  const std::vector<ChatMessage> conv = {{"user", "hi"}, {"assistant", "yo"}};
  const TokenizedExample ex = TokenizeConversation(conv, renderer_, tok_, {4096, true});
  EXPECT_EQ(Mask(ex.loss_mask), (std::vector<int>{0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(ex.num_loss_tokens, 10);
}

TEST_F(TokenizedExampleTest, TruncatesToMaxLengthAndReportsNoLossWhenAssistantIsCut) {
  const std::vector<ChatMessage> conv = {{"user", "hi"}, {"assistant", "yo"}};
  // 11 tokens; max 9 keeps "...<|assistant|> \n y o": loss on y, o.
  TokenizedExample ex = TokenizeConversation(conv, renderer_, tok_, {9, false});
  EXPECT_TRUE(ex.truncated);
  EXPECT_EQ(ex.tokens.size(), 9u);
  EXPECT_EQ(Mask(ex.loss_mask), (std::vector<int>{0, 0, 0, 0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(ex.num_loss_tokens, 2);
  // Exactly 11 is not truncated.
  EXPECT_FALSE(TokenizeConversation(conv, renderer_, tok_, {11, false}).truncated);
  // max 7 cuts the whole assistant turn: no loss token, to be dropped.
  ex = TokenizeConversation(conv, renderer_, tok_, {7, false});
  EXPECT_TRUE(ex.truncated);
  EXPECT_EQ(ex.num_loss_tokens, 0);
  EXPECT_THROW(TokenizeConversation(conv, renderer_, tok_, {1, false}), Error);
}

// Pretraining: format "text" gives one assistant message; the "plain" template renders it as is
// followed by EOS, so every token but the first is a target and the document ends in EOS.
TEST_F(TokenizedExampleTest, PlainTemplateTrainsOnAWholeDocumentEndingInEos) {
  const ChatTemplate plain = ChatTemplate::Builtin("plain", "", "<|end|>");
  const TokenizedExample ex = TokenizeConversation({{"assistant", "ab c"}}, plain, tok_, {4096, false});
  EXPECT_EQ(Widen(ex.tokens), (std::vector<int64_t>{Id('a'), Id('b'), Id(' '), Id('c'), kEndId}));
  EXPECT_EQ(Mask(ex.loss_mask), (std::vector<int>{0, 1, 1, 1, 1}));
  // A prompt (format prompt_completion with "plain") is concatenated and not trained on.
  const TokenizedExample pc =
      TokenizeConversation({{"user", "q"}, {"assistant", "a"}}, plain, tok_, {4096, false});
  EXPECT_EQ(Widen(pc.tokens), (std::vector<int64_t>{Id('q'), Id('a'), kEndId}));
  EXPECT_EQ(Mask(pc.loss_mask), (std::vector<int>{0, 1, 1}));
}

}  // namespace
}  // namespace cemoe
