// recipe_proto.h: the recipe as protobuf (recipes/recipe.proto) <-> the plain RunConfig
// (run_config.h), and the text-format parser with file:line:column errors.
//
// The only place besides the loader that sees protobuf: model/, parallel/ and the trainer's
// libraries take RunConfig. The mapping is one to one: every RunConfig field but `source` is one
// recipe field of the same name in the section of the same name (RunConfig::optim.lr <->
// Recipe.optim.lr). A field absent from the recipe (proto3 `optional` without a value) takes
// RunConfig's default; an empty `optim.no_decay` list takes its default ["norm", "bias"].
// Thread-safety: stateless functions.
#pragma once

#include <string>

#include "recipes/recipe.pb.h"
#include "trainer/config/run_config.h"

namespace cemoe {

// Parses text-format `text`; a syntax error, an unknown field or a field given twice throws
// cemoe::Error "<source>:<line>:<column>: <protobuf's message>" (1-based, one line per error).
recipe::Recipe ParseRecipeText(const std::string& text, const std::string& source);

// The recipe's values over RunConfig's defaults. `source` is left empty; no validation, and no
// defaults that depend on other fields (recipe_loader.h fills those).
RunConfig RunConfigFromRecipe(const recipe::Recipe& recipe);

// Every field of `config` (but `source`) set explicitly, empty lists included as empty.
recipe::Recipe RecipeFromRunConfig(const RunConfig& config);

}  // namespace cemoe
