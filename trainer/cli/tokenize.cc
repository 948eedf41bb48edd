// tokenize.cc: `cemoe tokenize` encodes text with a Hugging Face tokenizer.json (or decodes
// ids back to text with --decode) and writes a JSON list with one entry per input.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "model/json_file.h"
#include "trainer/cli/commands.h"
#include "trainer/tokenizer/tokenizer.h"

namespace cemoe {

void AddTokenizeCommand(CLI::App& app) {
  struct Options {
    std::string tokenizer, text, input, out;
    bool decode = false, skip_special = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize",
      "Encode text with a Hugging Face tokenizer.json (= encode(text, add_special_tokens=False)"
      ".ids), or decode token ids with --decode");
  cmd->add_option("--tokenizer", opt->tokenizer, "tokenizer.json, or a model folder holding one")
      ->required();
  auto* text = cmd->add_option("--text", opt->text,
                               "One text to encode (with --decode: a JSON list of ids)");
  auto* input =
      cmd->add_option("--input", opt->input,
                      "JSON file: a list of strings to encode (with --decode: a list of id lists)");
  text->excludes(input);
  cmd->add_option("--out", opt->out,
                  "Output JSON file: a list of id lists, one per input (with --decode: a list of "
                  "strings); default: stdout");
  cmd->add_flag("--decode", opt->decode, "Decode id lists to text instead of encoding");
  cmd->add_flag("--skip-special-tokens", opt->skip_special,
                "With --decode: drop added tokens marked special (HF skip_special_tokens=True)");
  cmd->callback([opt, text, input] {
    CEMOE_CHECK(text->count() + input->count() == 1,
                "tokenize: give exactly one of --text and "
                "--input");
    const Tokenizer tok = Tokenizer::FromFile(opt->tokenizer);
    const std::string where = input->count() ? opt->input : std::string("--text");
    nlohmann::json items;
    if (input->count()) {
      items = ReadJsonFile(opt->input, "input file");
    } else if (opt->decode) {
      items = nlohmann::json::array(
          {ParseJsonText(opt->text, "--text (with --decode, a JSON list of ids)")});
    } else {
      items = nlohmann::json::array({opt->text});
    }
    CEMOE_CHECK(items.is_array(), "{}: expected a JSON list, got {}", where, items.type_name());
    nlohmann::json result = nlohmann::json::array();
    for (size_t i = 0; i < items.size(); ++i) {
      const nlohmann::json& item = items[i];
      if (opt->decode) {
        CEMOE_CHECK(item.is_array(), "{}: item {} is not a list of ids: {}", where, i,
                    JsonExcerpt(item));
        std::vector<int64_t> ids;
        for (const auto& id : item) {
          ids.push_back(JsonInt64(id, fmt::format("{}: item {}: token id", where, i)));
        }
        result.push_back(tok.Decode(ids, opt->skip_special));
      } else {
        CEMOE_CHECK(item.is_string(), "{}: item {} is not a string: {}", where, i,
                    JsonExcerpt(item));
        result.push_back(tok.Encode(item.get<std::string>()));
      }
    }
    const std::string text_out = result.dump(-1, ' ', false) + "\n";
    if (opt->out.empty()) {
      std::cout << text_out;
    } else {
      WriteTextFileAtomically(opt->out, text_out);  // never a half-written file
    }
  });
}

}  // namespace cemoe
