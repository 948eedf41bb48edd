// ifeval_checks_test.cc: IFEval's checkers (trainer/eval/ifeval_checks.h) and the text
// operations under them (ifeval_text.h, ifeval_punkt.h) on hand-made responses.
//
// data/ifeval/checker_cases.jsonl holds 75 hand-worked cases (instruction, kwargs, response,
// expected strict and loose verdicts, and why), a pass and a fail case for every supported
// instruction, boundary counts for both relations and responses that fail strict but pass
// loose. Every expectation there was also confirmed by running lm-evaluation-harness's own
// utils.process_results (v0.4.12-48-g4e7e0d47, nltk 3.10.4 with the punkt_tab English model)
// on the same rows, outside this test.
#include "trainer/eval/ifeval_checks.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>

#include "model/check.h"
#include "trainer/eval/ifeval_punkt.h"
#include "trainer/eval/ifeval_text.h"

namespace cemoe {
namespace {

using ifeval::DecodeUtf8;
using ifeval::EncodeUtf8;

std::string DataPath(const std::string& name) {
  const char* root = std::getenv("CEMOE_SOURCE_DIR");
  EXPECT_NE(root, nullptr) << "CEMOE_SOURCE_DIR is not set (run through ctest)";
  return std::string(root ? root : ".") + "/tests/trainer/eval/data/ifeval/" + name;
}

IfevalInstruction Make(const std::string& id, const nlohmann::json& kwargs = nullptr) {
  return MakeIfevalInstruction(id, kwargs, "the prompt", "test.jsonl:1");
}

std::string ErrorOf(const std::string& id, const nlohmann::json& kwargs) {
  try {
    Make(id, kwargs);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(IfevalChecks, HandWorkedCasesStrictAndLoose) {
  std::ifstream in(DataPath("checker_cases.jsonl"));
  ASSERT_TRUE(in.good());
  std::string line;
  std::set<std::string> ids_seen, ids_pass, ids_fail;
  int cases = 0, loose_only = 0;
  while (std::getline(in, line)) {
    const nlohmann::json c = nlohmann::json::parse(line);
    const std::string id = c["id"];
    const std::string response = c["response"];
    const IfevalInstruction inst = Make(id, c["kwargs"]);
    EXPECT_EQ(IfevalFollowsStrict(inst, response), c["strict"].get<bool>())
        << id << " strict on " << nlohmann::json(response).dump() << ": " << c["why"];
    EXPECT_EQ(IfevalFollowsLoose(inst, response), c["loose"].get<bool>())
        << id << " loose on " << nlohmann::json(response).dump() << ": " << c["why"];
    ids_seen.insert(id);
    (c["strict"].get<bool>() ? ids_pass : ids_fail).insert(id);
    loose_only += !c["strict"].get<bool>() && c["loose"].get<bool>();
    ++cases;
  }
  EXPECT_EQ(cases, 75);
  EXPECT_GE(loose_only, 8);
  // Every supported instruction has a passing and a failing case.
  for (const std::string& id : IfevalSupportedInstructions()) {
    EXPECT_TRUE(ids_pass.count(id)) << id << " has no passing case";
    EXPECT_TRUE(ids_fail.count(id)) << id << " has no failing case";
  }
}

TEST(IfevalChecks, RegistryListsMatchTheHarness) {
  const std::vector<std::string> supported = IfevalSupportedInstructions();
  EXPECT_EQ(supported.size(), 24u);
  // The harness's INSTRUCTION_DICT has 25 ids; one needs langdetect.
  EXPECT_EQ(IfevalUnsupportedInstructions(),
            std::vector<std::string>{"language:response_language"});
  for (const char* id :
       {"keywords:existence", "keywords:frequency", "keywords:forbidden_words",
        "keywords:letter_frequency", "length_constraints:number_sentences",
        "length_constraints:number_paragraphs", "length_constraints:number_words",
        "length_constraints:nth_paragraph_first_word", "detectable_content:number_placeholders",
        "detectable_content:postscript", "detectable_format:number_bullet_lists",
        "detectable_format:constrained_response", "detectable_format:number_highlighted_sections",
        "detectable_format:multiple_sections", "detectable_format:json_format",
        "detectable_format:title", "combination:two_responses", "combination:repeat_prompt",
        "startend:end_checker", "startend:quotation", "change_case:capital_word_frequency",
        "change_case:english_capital", "change_case:english_lowercase", "punctuation:no_comma"}) {
    EXPECT_TRUE(IfevalInstructionSupported(id)) << id;
  }
  EXPECT_FALSE(IfevalInstructionSupported("language:response_language"));
  EXPECT_FALSE(IfevalInstructionSupported("keywords:key_sentences"));  // commented out there
}

TEST(IfevalChecks, LooseVariantsAreTheHarnesss) {
  const std::vector<std::string> v = IfevalLooseResponses("*a*\n b \n*c*");
  ASSERT_EQ(v.size(), 8u);
  EXPECT_EQ(v[0], "*a*\n b \n*c*");
  EXPECT_EQ(v[1], "a\n b \nc");
  EXPECT_EQ(v[2], "b \n*c*");   // without the first line, stripped
  EXPECT_EQ(v[3], "*a*\n b");   // without the last line, stripped
  EXPECT_EQ(v[4], "b");         // without both
  EXPECT_EQ(v[5], "b \nc");
  EXPECT_EQ(v[6], "a\n b");
  EXPECT_EQ(v[7], "b");
  const std::vector<std::string> one = IfevalLooseResponses("x");
  EXPECT_EQ(one[2], "");
  EXPECT_EQ(one[3], "");
  EXPECT_EQ(one[4], "");
}

TEST(IfevalChecks, CaseChecksSkipLanguageIdentification) {
  // lm-eval would also require langdetect to say "en"; here only the case is checked.
  EXPECT_TRUE(Make("change_case:english_capital").CheckFollowing("ÉCOLE ПРИВЕТ"));
  EXPECT_FALSE(Make("change_case:english_capital").CheckFollowing("ÉCOLE Привет"));
  EXPECT_TRUE(Make("change_case:english_lowercase").CheckFollowing("straße ça 日本"));
  EXPECT_FALSE(Make("change_case:english_lowercase").CheckFollowing("日本 123"));  // uncased
}

TEST(IfevalChecks, KwargsAsTheHarnessFiltersThem) {
  // Falsy values are dropped (utils.py `if v`): the HF file's all-null kwargs are fine.
  EXPECT_TRUE(Make("punctuation:no_comma", {{"num_words", nullptr}, {"keywords", nullptr},
                                            {"relation", ""}, {"frequency", 0}})
                  .CheckFollowing("a b"));
  // A regex keyword (not literal) goes through std::regex.
  EXPECT_TRUE(Make("keywords:existence", {{"keywords", {"colou?r"}}}).CheckFollowing("Color"));
  EXPECT_EQ(Make("keywords:frequency", {{"keyword", "a.c"}, {"frequency", 2},
                                        {"relation", "at least"}})
                .CheckFollowing("abc aXc a\nc"),
            true);  // '.' matches any character but a newline: abc, aXc
}

TEST(IfevalChecks, BadKwargsNameWhereIdAndKwarg) {
  const std::string missing =
      ErrorOf("length_constraints:number_words", {{"relation", "less than"}});
  EXPECT_NE(missing.find("test.jsonl:1"), std::string::npos) << missing;
  EXPECT_NE(missing.find("length_constraints:number_words"), std::string::npos) << missing;
  EXPECT_NE(missing.find("\"num_words\" is missing"), std::string::npos) << missing;
  const std::string relation =
      ErrorOf("length_constraints:number_words", {{"num_words", 5}, {"relation", "at most"}});
  EXPECT_NE(relation.find("kwarg \"relation\" must be \"less than\" or \"at least\", got "
                          "\"at most\""),
            std::string::npos)
      << relation;
  const std::string type =
      ErrorOf("length_constraints:number_words", {{"num_words", "5"}, {"relation", "at least"}});
  EXPECT_NE(type.find("kwarg \"num_words\" must be an integer, got \"5\""), std::string::npos)
      << type;
  const std::string negative = ErrorOf("detectable_format:number_bullet_lists", {{"num_bullets", -1}});
  EXPECT_NE(negative.find("must be an integer >= 0, got -1"), std::string::npos) << negative;
  const std::string unexpected = ErrorOf("punctuation:no_comma", {{"num_words", 3}});
  EXPECT_NE(unexpected.find("unexpected kwarg \"num_words\" = 3"), std::string::npos)
      << unexpected;
  const std::string letter = ErrorOf("keywords:letter_frequency",
                                     {{"letter", "ab"}, {"let_frequency", 2},
                                      {"let_relation", "at least"}});
  EXPECT_NE(letter.find("kwarg \"letter\" must be one ASCII letter, got \"ab\""),
            std::string::npos)
      << letter;
  const std::string nth = ErrorOf("length_constraints:nth_paragraph_first_word",
                                  {{"num_paragraphs", 2}, {"nth_paragraph", 3},
                                   {"first_word", "a"}});
  EXPECT_NE(nth.find("kwarg \"nth_paragraph\" must be at most num_paragraphs (2), got 3"),
            std::string::npos)
      << nth;
  EXPECT_NE(ErrorOf("keywords:existence", {{"keywords", {1}}}).find("a list of strings"),
            std::string::npos);
  EXPECT_NE(ErrorOf("keywords:existence", {{"keywords", {"(unclosed"}}})
                .find("is not a regular expression"),
            std::string::npos);
  EXPECT_NE(ErrorOf("keywords:existence", "x").find("kwargs must be a JSON object"),
            std::string::npos);
  EXPECT_NE(ErrorOf("language:response_language", {{"language", "fr"}}).find("langdetect"),
            std::string::npos);
  EXPECT_NE(ErrorOf("nonsense:id", nullptr).find("not an lm-evaluation-harness IFEval"),
            std::string::npos);
}

// --- text operations -----------------------------------------------------------------------

std::vector<std::string> Sentences(const std::string& text) {
  std::vector<std::string> out;
  for (const std::u32string& s : ifeval::PunktSentences(DecodeUtf8(text))) {
    out.push_back(EncodeUtf8(s));
  }
  return out;
}

TEST(IfevalText, PunktSentencesAsNltk) {
  // Each expectation is nltk 3.10.4's sent_tokenize (punkt_tab English) on the same text.
  using V = std::vector<std::string>;
  EXPECT_EQ(Sentences("Hello world. This is Mr. Smith! Is it? Yes."),
            (V{"Hello world.", "This is Mr. Smith!", "Is it?", "Yes."}));
  EXPECT_EQ(Sentences("1. Apple\n2. Banana"), (V{"1.", "Apple\n2.", "Banana"}));
  EXPECT_EQ(Sentences("e.g. this is fine."), (V{"e.g.", "this is fine."}));
  EXPECT_EQ(Sentences("He said \"Hi.\" Then left."), (V{"He said \"Hi.\"", "Then left."}));
  EXPECT_EQ(Sentences("Very bad acting!!! I promise."), (V{"Very bad acting!!!", "I promise."}));
  EXPECT_EQ(Sentences("It costs 3.5 dollars. In the U.S. it is more."),
            (V{"It costs 3.5 dollars.", "In the U.S. it is more."}));
  EXPECT_EQ(Sentences("Wait... what? (Really.) Yes"), (V{"Wait... what?", "(Really.)", "Yes"}));
  EXPECT_EQ(Sentences("no end punctuation\n\nat all"), (V{"no end punctuation\n\nat all"}));
  EXPECT_EQ(ifeval::CountSentences(DecodeUtf8("")), 0);
  EXPECT_EQ(ifeval::CountSentences(DecodeUtf8(" \n ")), 0);
  EXPECT_EQ(ifeval::CountSentences(DecodeUtf8("Café. Über alles.")), 2);
}

TEST(IfevalText, WordsAndCapitalWords) {
  EXPECT_EQ(ifeval::CountWords(DecodeUtf8("It's a well-known fact: 3,000 cafés_ok!")), 9);
  EXPECT_EQ(ifeval::CountWords(DecodeUtf8("—“”… 😀")), 0);
  std::vector<std::string> toks;
  for (const std::u32string& t : ifeval::NltkWordTokens(DecodeUtf8("I'M SURE, DON'T GO. I'm ok"))) {
    toks.push_back(EncodeUtf8(t));
  }
  // nltk.word_tokenize: I 'M SURE , DO N'T GO . I 'm ok
  EXPECT_EQ(toks, (std::vector<std::string>{"I", "'M", "SURE", ",", "DO", "N'T", "GO", ".", "I",
                                            "'m", "ok"}));
  EXPECT_EQ(ifeval::CountCapitalWords(DecodeUtf8("I'M SURE, DON'T GO. I'm ok")), 7);
  EXPECT_EQ(ifeval::CountCapitalWords(DecodeUtf8("CANNOT WAIT...NOW (OK) 'TIS U.S.A.")), 7);
  EXPECT_EQ(ifeval::CountCapitalWords(DecodeUtf8("Well-KNOWN 10:30AM A/B")), 2);
}

TEST(IfevalText, PythonStringSemantics) {
  EXPECT_TRUE(ifeval::IsUpper(DecodeUtf8("ÀÉÎ 1")));
  EXPECT_FALSE(ifeval::IsUpper(DecodeUtf8("ÀÉÎß")));  // ß is lowercase
  EXPECT_TRUE(ifeval::IsLower(DecodeUtf8("σπ ж")));
  EXPECT_EQ(EncodeUtf8(ifeval::ToLower(DecodeUtf8("ÀΣЖŸ"))), "àσжÿ");
  EXPECT_EQ(EncodeUtf8(ifeval::Strip(DecodeUtf8("\u3000\u00a0 x \u2028"))), "x");
  EXPECT_EQ(DecodeUtf8("a\xff" "b"), (std::u32string{U'a', 0xFFFD, U'b'}));
  EXPECT_EQ(ifeval::SplitWhitespace(DecodeUtf8(" a\u2003b  ")).size(), 2u);
}

}  // namespace
}  // namespace cemoe
