// recipe_docs_test.cc: docs/recipes.md documents every field of recipes/recipe.proto. Walks the
// Recipe descriptor recursively and fails naming every field path (`optim.lr`,
// `data.train[].path`) that has no row in the docs' field tables, every row that names no field,
// and every row whose Default column disagrees with RunConfig's default.
// Reads the docs from $CEMOE_SOURCE_DIR (set by CTest for every test).
#include <google/protobuf/descriptor.h>
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "trainer/config/recipe_proto.h"

namespace cemoe {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// Table rows of docs/recipes.md whose first cell is a backticked name: name -> default cell.
std::map<std::string, std::string> DocumentedRows() {
  const char* root = std::getenv("CEMOE_SOURCE_DIR");
  EXPECT_NE(root, nullptr) << "CEMOE_SOURCE_DIR is not set (run through ctest)";
  if (root == nullptr) return {};
  const std::string path = std::string(root) + "/docs/recipes.md";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::map<std::string, std::string> rows;
  std::string line;
  while (std::getline(in, line)) {
    // Cells between unescaped '|' ("\|" inside a cell is a literal bar), trimmed.
    if (line.rfind("| `", 0) != 0) continue;
    std::vector<std::string> cells(1);
    for (size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
        cells.back() += '|';
        ++i;
      } else if (line[i] == '|') {
        cells.emplace_back();
      } else {
        cells.back() += line[i];
      }
    }
    for (std::string& c : cells) {
      c.erase(0, c.find_first_not_of(' '));
      c.erase(c.find_last_not_of(' ') + 1);
    }
    if (cells.size() < 4 || cells[0].size() < 2 || cells[0].back() != '`') continue;
    rows[cells[0].substr(1, cells[0].size() - 2)] = cells[2];
  }
  return rows;
}

// Every field path of `descriptor` under `prefix`, with the message holding the field.
void FieldPaths(const Descriptor* descriptor, const std::string& prefix,
                std::vector<std::pair<std::string, const FieldDescriptor*>>* out) {
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* f = descriptor->field(i);
    const std::string path = prefix + f->name();
    out->emplace_back(path, f);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      FieldPaths(f->message_type(), path + (f->is_repeated() ? "[]." : "."), out);
    }
  }
}

TEST(RecipeDocs, EveryFieldIsDocumented) {
  const auto rows = DocumentedRows();
  ASSERT_FALSE(rows.empty());
  std::vector<std::pair<std::string, const FieldDescriptor*>> fields;
  FieldPaths(recipe::Recipe::descriptor(), "", &fields);
  std::string missing;
  std::set<std::string> known;
  for (const auto& [path, field] : fields) {
    known.insert(path);
    if (rows.count(path) == 0) missing += "\n  " + path;
  }
  EXPECT_TRUE(missing.empty()) << "fields of recipes/recipe.proto missing from docs/recipes.md "
                                  "(add a table row \"| `path` | type | default | meaning |\"):"
                               << missing;
  std::string stale;
  for (const auto& [name, cell] : rows) {
    if (known.count(name) == 0) stale += "\n  " + name;
  }
  EXPECT_TRUE(stale.empty()) << "docs/recipes.md has rows for fields recipe.proto lacks:" << stale;
}

// The Default column, compared with RunConfig's defaults as the resolved recipe writes them.
TEST(RecipeDocs, DefaultsMatchRunConfig) {
  const auto rows = DocumentedRows();
  RunConfig defaults;
  defaults.data.train.emplace_back();
  defaults.eval.task.emplace_back();
  defaults.pipeline.row.emplace_back();
  const recipe::Recipe resolved = RecipeFromRunConfig(defaults);
  // Defaults that depend on other values or are required: the docs say so in words.
  const std::set<std::string> in_words = {"name",
                                          "run_dir",
                                          "model.path",
                                          "data.train[].path",
                                          "data.train[].prompt_field",
                                          "data.train[].completion_field",
                                          "eval.task[].name",
                                          "eval.task[].data",
                                          "pipeline.row[].name"};
  google::protobuf::TextFormat::Printer printer;
  int compared = 0;
  std::function<void(const Message&, const std::string&)> walk = [&](const Message& m,
                                                                     const std::string& prefix) {
    const Descriptor* d = m.GetDescriptor();
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* f = d->field(i);
      const std::string path = prefix + f->name();
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        const Message& child = f->is_repeated() ? m.GetReflection()->GetRepeatedMessage(m, f, 0)
                                                : m.GetReflection()->GetMessage(m, f);
        walk(child, path + (f->is_repeated() ? "[]." : "."));
        continue;
      }
      if (in_words.count(path) || rows.count(path) == 0) continue;  // missing: the test above
      // The docs' value: the cell's first token without backticks (a list up to its "]").
      std::string cell = rows.at(path);
      cell.erase(std::remove(cell.begin(), cell.end(), '`'), cell.end());
      const std::string doc = cell.rfind('[', 0) == 0 ? cell.substr(0, cell.find(']') + 1)
                                                      : cell.substr(0, cell.find(' '));
      std::string want;
      if (f->is_repeated()) {
        for (int j = 0; j < m.GetReflection()->FieldSize(m, f); ++j) {
          std::string v;
          printer.PrintFieldValueToString(m, f, j, &v);
          want += (j == 0 ? "" : ", ") + v;
        }
        want = "[" + want + "]";
        EXPECT_EQ(doc, want) << path;
      } else {
        printer.PrintFieldValueToString(m, f, -1, &want);
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
          EXPECT_EQ(doc == "\"\"" ? "" : doc, want.substr(1, want.size() - 2)) << path;
        } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_BOOL) {
          EXPECT_EQ(doc, want) << path;
        } else {
          char* end = nullptr;
          const double doc_value = std::strtod(doc.c_str(), &end);
          EXPECT_TRUE(!doc.empty() && *end == '\0') << path << ": default \"" << doc << "\"";
          EXPECT_EQ(doc_value, std::strtod(want.c_str(), nullptr)) << path;
        }
      }
      ++compared;
    }
  };
  walk(resolved, "");
  EXPECT_GT(compared, 40);
}

}  // namespace
}  // namespace cemoe
