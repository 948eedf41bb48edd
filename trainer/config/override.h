// override.h: `--set section.field=value` on a parsed recipe, by field path through protobuf
// reflection, so every recipe field can be overridden without code per field.
//
// Path syntax (docs/recipes.md, "Overrides"):
//   optim.lr=1e-5                 a scalar: number, true/false (or 1/0), or text taken as is
//   train.freeze=router,experts   a list of scalars: comma-separated, replacing the whole list;
//                                 an empty value gives an empty list
//   train.freeze[1]=norms         one element of a list (an index equal to the length appends)
//   data.train[0].path=a.jsonl    a field of one element of a list of sections (same indexing)
// An unknown field (the message lists the section's fields), a section where a value belongs, a
// value that does not parse as the field's type, or an index past the end throws cemoe::Error
// naming the override and the path.
// Thread-safety: stateless; mutates only `message`.
#pragma once

#include <google/protobuf/message.h>

#include <string>

namespace cemoe {

// Applies one "path=value" assignment to `message` (a recipe::Recipe, or any message).
void ApplyOverride(google::protobuf::Message* message, const std::string& assignment);

}  // namespace cemoe
