// published_configs.h: the config.json files of the published checkpoints, verbatim, so that
// `cemoe init --preset olmoe-1b-7b|phi-3.5-moe` matches them exactly.
//
// Sources:
//   phi-3.5-moe (microsoft/Phi-3.5-MoE-instruct): VERBATIM copy of the published config.json as
//     vendored in github.com/sgl-project/ome, pkg/hfutil/modelconfig/testdata/phimoe.json
//     (commit 17b77edad23bae262e0c9adb7f12039397a5d33d; the file's own test asserts 64/64 factor
//     entries, long_factor[0] 1.0199999809265137, short_factor[0] 1.0, mscales 1.243163121016122).
//     Cross-checked: the first 8 entries of long_factor and short_factor match the truncated
//     Phi-3.5-MoE rope_scaling in EasyDeL's tests; every scalar key matches the key-by-key listing
//     of the published config in the "Phi-3.5-MoE-and-Mini-Fine-tuning" write-up. Entries 9..64 of
//     both factor lists have a single source.
//   olmoe-1b-7b (allenai/OLMoE-1B-7B-0924): NOT VERBATIM. No copy of the published file could be
//     found. The text holds the key set transformers writes for OlmoeConfig, with values
//     corroborated by several independent sources (transformers' OlmoeConfig defaults doc,
//     engine test fixtures of the 1B-7B shape). Left out because unverified: "_name_or_path",
//     "torch_dtype", "transformers_version". See PublishedConfigIsVerbatim().
#pragma once

#include <string>

namespace cemoe {

// name: "olmoe-1b-7b" or "phi-3.5-moe"; returns the JSON text; throws std::out_of_range for other
// names.
const std::string& PublishedConfigJson(const std::string& name);

// True where PublishedConfigJson(name) is a byte-for-byte copy of the published file (modulo the
// trailing newline); false for "olmoe-1b-7b" (reconstructed, see above). Throws std::out_of_range
// for other names.
bool PublishedConfigIsVerbatim(const std::string& name);

}  // namespace cemoe
