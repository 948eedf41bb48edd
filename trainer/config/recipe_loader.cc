// recipe_loader.cc: see recipe_loader.h.
#include "trainer/config/recipe_loader.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/text_format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "model/json_file.h"
#include "trainer/config/override.h"
#include "trainer/config/recipe_proto.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;
using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Recipes are a few kilobytes; anything this large is not one.
constexpr uintmax_t kMaxRecipeBytes = uintmax_t{16} << 20;

std::string ReadRecipeFile(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  CEMOE_CHECK(fs::exists(status), "recipe {}: no such file", path);
  CEMOE_CHECK(fs::is_regular_file(status), "recipe {}: not a regular file", path);
  const uintmax_t size = fs::file_size(path, ec);
  CEMOE_CHECK(!ec && size <= kMaxRecipeBytes, "recipe {}: {} bytes, more than a recipe can be ({})",
              path, size, kMaxRecipeBytes);
  std::ifstream in(path, std::ios::binary);
  CEMOE_CHECK(in.good(), "recipe {}: cannot be read", path);
  std::ostringstream text;
  text << in.rdbuf();
  CEMOE_CHECK(!in.bad(), "recipe {}: read failed", path);
  return text.str();
}

// The defaults that depend on other fields or on the file name (recipe_loader.h, step 4).
void FillDependentDefaults(RunConfig* c, const std::string& path) {
  if (c->name.empty()) c->name = fs::path(path).stem().string();
  if (c->run_dir.empty()) c->run_dir = (fs::path("runs") / c->name).string();
  for (DataSource& s : c->data.train) {
    if (s.format == "prompt_completion") {
      if (s.prompt_field.empty()) s.prompt_field = "prompt";
      if (s.completion_field.empty()) s.completion_field = "completion";
    } else if (s.format == "instruction") {
      if (s.prompt_field.empty()) s.prompt_field = "instruction";
      if (s.completion_field.empty()) s.completion_field = "output";
    } else if (s.format == "text") {
      if (s.completion_field.empty()) s.completion_field = "text";
    }
  }
}

// Writes every field of `message` in text format (fields in declaration order), nested sections
// indented by two spaces, empty lists as [].
void PrintAllFields(const Message& message, int indent,
                    const google::protobuf::TextFormat::Printer& printer, std::string* out) {
  const Descriptor* descriptor = message.GetDescriptor();
  const Reflection* r = message.GetReflection();
  const std::string pad(static_cast<size_t>(indent), ' ');
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    const std::string& name = field->name();
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (!field->is_repeated()) {
        *out += pad + name + " {\n";
        PrintAllFields(r->GetMessage(message, field), indent + 2, printer, out);
        *out += pad + "}\n";
        continue;
      }
      const int n = r->FieldSize(message, field);
      if (n == 0) *out += pad + name + ": []\n";
      for (int j = 0; j < n; ++j) {
        *out += pad + name + " {\n";
        PrintAllFields(r->GetRepeatedMessage(message, field, j), indent + 2, printer, out);
        *out += pad + "}\n";
      }
    } else if (field->is_repeated()) {
      std::string list;
      for (int j = 0; j < r->FieldSize(message, field); ++j) {
        std::string value;
        printer.PrintFieldValueToString(message, field, j, &value);
        list += (j == 0 ? "" : ", ") + value;
      }
      *out += pad + name + ": [" + list + "]\n";
    } else {
      std::string value;
      printer.PrintFieldValueToString(message, field, -1, &value);
      *out += pad + name + ": " + value + "\n";
    }
  }
}

// `text` on one comment line.
std::string OneLine(const std::string& text) {
  std::string line = Excerpt(text, 300);
  for (char& ch : line) {
    if (ch == '\n' || ch == '\r') ch = ' ';
  }
  return line;
}

}  // namespace

RunConfig ResolveRecipeText(const std::string& text, const std::string& path,
                            const std::vector<std::string>& overrides,
                            const std::string& run_dir_override) {
  recipe::Recipe recipe = ParseRecipeText(text, path);
  for (const std::string& assignment : overrides) ApplyOverride(&recipe, assignment);
  RunConfig config = RunConfigFromRecipe(recipe);
  config.source = path;
  FillDependentDefaults(&config, path);
  if (!run_dir_override.empty()) config.run_dir = run_dir_override;
  return config;
}

RunConfig LoadRecipe(const std::string& path, const std::vector<std::string>& overrides,
                     const std::string& run_dir_override, const ValidateOptions& options) {
  RunConfig config = ResolveRecipeText(ReadRecipeFile(path), path, overrides, run_dir_override);
  Validate(config, options);
  return config;
}

std::string ResolvedRecipeText(const RunConfig& config) {
  google::protobuf::TextFormat::Printer printer;
  printer.SetUseUtf8StringEscaping(true);
  std::string out = fmt::format(
      "# Resolved recipe of run \"{}\": every field, defaults filled in and command-line\n"
      "# overrides applied (field meanings: docs/recipes.md). From: {}\n",
      OneLine(config.name), config.source.empty() ? "(no file)" : OneLine(config.source));
  PrintAllFields(RecipeFromRunConfig(config), 0, printer, &out);
  return out;
}

void WriteResolvedRecipe(const RunConfig& config, const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    CEMOE_CHECK(!ec, "cannot create folder {} for the resolved recipe: {}", parent.string(),
                ec.message());
  }
  WriteTextFileAtomically(path, ResolvedRecipeText(config));
}

}  // namespace cemoe
