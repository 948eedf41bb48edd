#include "tests/trainer/eval/eval_test_files.h"
#include "trainer/eval/eval_data.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model/check.h"

namespace cemoe {
namespace {

std::string ErrorOf(const std::string& path, std::vector<std::string> fields, int64_t limit = 0) {
  try {
    ReadEvalJsonl(path, fields, limit);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(EvalData, ReadsObjectsSkipsBlankLinesAndHonoursLimit) {
  const std::string p =
      testing::WriteTempFile("eval_data_ok.jsonl", "{\"q\": \"a\"}\n\n{\"q\": \"b\"}\r\n{\"q\": \"c\"}");
  const auto all = ReadEvalJsonl(p, {"q"});
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1].line, 3);
  EXPECT_EQ(EvalString(all[2], p, "q"), "c");
  EXPECT_EQ(ReadEvalJsonl(p, {"q"}, 2).size(), 2u);
}

TEST(EvalData, ErrorsNameFileLineAndField) {
  const std::string p = testing::WriteTempFile("eval_data_bad.jsonl", "{\"q\": 1}\n{\"x\": 2}\n");
  const std::string missing = ErrorOf(p, {"q"});
  EXPECT_NE(missing.find(p + ":2"), std::string::npos) << missing;
  EXPECT_NE(missing.find("\"q\""), std::string::npos) << missing;
  const auto ok = ReadEvalJsonl(p, {}, 1);
  try {
    EvalString(ok[0], p, "q");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(":1: the field \"q\" must be a string, got 1"),
              std::string::npos)
        << e.what();
  }
  EXPECT_NE(ErrorOf(testing::WriteTempFile("eval_data_arr.jsonl", "[1]\n"), {}).find("expected a JSON object"),
            std::string::npos);
  EXPECT_NE(ErrorOf(testing::WriteTempFile("eval_data_json.jsonl", "{\"q\":\n"), {}).find("eval_data_json.jsonl:1"),
            std::string::npos);
  EXPECT_NE(ErrorOf(testing::WriteTempFile("eval_data_empty.jsonl", "\n"), {}).find("no examples"),
            std::string::npos);
  EXPECT_NE(ErrorOf("/nonexistent/eval.jsonl", {}).find("cannot read"), std::string::npos);
}

}  // namespace
}  // namespace cemoe
