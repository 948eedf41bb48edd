// recipe_loader.h: a recipe file (text-format recipes/recipe.proto) plus command-line overrides
// into one validated RunConfig, and the resolved recipe written back out.
//
// LoadRecipe, in order:
//   1. reads `path` (a missing or unreadable file is an error naming it);
//   2. parses it; a syntax error or an unknown field reads "FILE:LINE:COLUMN: message";
//   3. applies each override "section.field=value" in order (override.h);
//   4. takes RunConfig's defaults for every field left out and fills the defaults that depend on
//      other fields: name = the file's name without its extension, run_dir = "runs/<name>"
//      (relative to the working directory), a data source's prompt_field and completion_field
//      by its format; a non-empty `run_dir_override` (--run-dir) replaces run_dir;
//   5. Validate (validate.h) with `options`.
// The world- and model-dependent rules (ValidateForWorld, ValidateForModel) are the caller's,
// once it knows the rank count and has read config.json; all of it happens before any work.
//
// The resolved recipe (ResolvedRecipeText) writes every field, defaults included, so a run is
// reproducible from it alone: LoadRecipe of it gives back an equal RunConfig. The trainer writes
// it to RUN_DIR/recipe.textproto and into every checkpoint folder (kResolvedRecipeFileName).
// Torch-free, protobuf-free header. Thread-safety: stateless functions.
#pragma once

#include <string>
#include <vector>

#include "trainer/config/run_config.h"
#include "trainer/config/validate.h"

namespace cemoe {

// The resolved recipe's file name inside the run folder and inside each checkpoint folder.
inline constexpr const char* kResolvedRecipeFileName = "recipe.textproto";

RunConfig LoadRecipe(const std::string& path, const std::vector<std::string>& overrides,
                     const std::string& run_dir_override, const ValidateOptions& options = {});

// Steps 2-4 of LoadRecipe on `text` (`path` names it in messages and gives the default name);
// no validation. For tests and tools.
RunConfig ResolveRecipeText(const std::string& text, const std::string& path,
                            const std::vector<std::string>& overrides,
                            const std::string& run_dir_override);

// Every field of `config` (but `source`) in text format, empty lists as [], after a comment
// header naming the run and the recipe it came from.
std::string ResolvedRecipeText(const RunConfig& config);

// ResolvedRecipeText(config) written atomically to `path` (model/atomic_folder.h); missing parent
// folders are created.
void WriteResolvedRecipe(const RunConfig& config, const std::string& path);

}  // namespace cemoe
