// tokenizer.cc: loading tokenizer.json, the added vocabulary, Encode and Decode. See tokenizer.h.
#include "trainer/tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "model/check.h"
#include "model/json_file.h"
#include "trainer/tokenizer/added.h"
#include "trainer/tokenizer/bpe.h"
#include "trainer/tokenizer/decode.h"
#include "trainer/tokenizer/json.h"
#include "trainer/tokenizer/normalize.h"
#include "trainer/tokenizer/pretokenize.h"
#include "trainer/tokenizer/regex.h"
#include "trainer/tokenizer/text.h"

namespace cemoe {

struct Tokenizer::Impl {
  std::string source;
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  std::unique_ptr<tok::BpeModel> model;
  std::unique_ptr<tok::Decoder> decoder;
  std::string post_processor_type, post_processor_json;

  std::vector<AddedToken> added;                             // file order
  std::unordered_map<std::string, size_t> added_by_content;  // -> index in added
  std::unordered_map<int64_t, size_t> added_by_id;
  std::unordered_map<int64_t, std::string> added_shown;  // normalized content, when it differs
  std::unordered_set<std::string> special_contents;
  std::unique_ptr<tok::AddedTokenMatcher> raw_matcher, normalized_matcher;

  void Model(const std::string& text, bool at_start, tok::RegexBudget* budget,
             std::vector<int64_t>* ids) const;
};

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  CEMOE_CHECK(in.good(), "{}: cannot open tokenizer file", path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

Tokenizer Tokenizer::FromFile(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) {
    file = (std::filesystem::path(path) / "tokenizer.json").string();
    CEMOE_CHECK(std::filesystem::exists(file), "{}: the folder has no tokenizer.json", path);
  }
  return FromJson(ReadFile(file), file);
}

Tokenizer Tokenizer::FromJson(const std::string& json_text, const std::string& source) {
  using tok::JsonSite;
  CheckJsonDepth(json_text, source);
  tok::Json j;
  try {
    j = tok::Json::parse(json_text);
  } catch (const tok::Json::exception& e) {
    CEMOE_FAIL("{}: invalid JSON: {}", source, e.what());
  }
  const JsonSite root{source, ""};
  if (!j.is_object()) root.Fail("expected a JSON object");
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  auto member = [&j](const char* key) -> const tok::Json& {
    static const tok::Json null_json;
    auto it = j.find(key);
    return it == j.end() ? null_json : *it;
  };
  for (const char* key : {"truncation", "padding"}) {
    if (!member(key).is_null()) {
      root.At(key).Unsupported(member(key),
                               "null (encode one text at a time, no truncation or "
                               "padding)");
    }
  }
  impl->normalizer = tok::ParseNormalizer(member("normalizer"), root.At("normalizer"));
  impl->pre_tokenizer = tok::ParsePreTokenizer(member("pre_tokenizer"), root.At("pre_tokenizer"));
  impl->model = tok::BpeModel::Parse(tok::Required(j, root, "model"), root.At("model"));
  impl->decoder = tok::ParseDecoder(member("decoder"), root.At("decoder"));
  const tok::Json& post = member("post_processor");
  if (!post.is_null()) {
    impl->post_processor_type = tok::GetType(post, root.At("post_processor"));
    impl->post_processor_json = post.dump();
  }

  // Added tokens, with the ids Hugging Face assigns on load (an existing token keeps its id,
  // a new one gets the next id after the model vocabulary); a file that says otherwise would be
  // renumbered by Hugging Face, so it is refused.
  const tok::Json& list = member("added_tokens");
  const JsonSite ls = root.At("added_tokens");
  if (!list.is_null() && !list.is_array()) ls.Fail("expected a list");
  int64_t next_id = static_cast<int64_t>(impl->model->vocab().size());
  for (size_t i = 0; list.is_array() && i < list.size(); ++i) {
    const tok::Json& e = list[i];
    const JsonSite s = ls.At(i);
    AddedToken t;
    t.content = tok::GetString(e, s, "content");
    const tok::Json& id = tok::Required(e, s, "id");
    if (!id.is_number_integer() || id.get<int64_t>() < 0) {
      s.At("id").Fail(fmt::format("expected a non-negative integer, got {}", JsonExcerpt(id)));
    }
    t.id = id.get<int64_t>();
    t.special = tok::GetBool(e, s, "special", false);
    t.single_word = tok::GetBool(e, s, "single_word", false);
    t.lstrip = tok::GetBool(e, s, "lstrip", false);
    t.rstrip = tok::GetBool(e, s, "rstrip", false);
    t.normalized = tok::GetBool(e, s, "normalized", !t.special);
    if (t.content.empty()) continue;  // Hugging Face ignores empty added tokens
    int64_t expected;
    if (auto a = impl->added_by_content.find(t.content); a != impl->added_by_content.end()) {
      expected = impl->added[a->second].id;
    } else if (auto m = impl->model->TokenToId(t.content)) {
      expected = *m;
    } else {
      expected = next_id++;
    }
    if (expected != t.id) {
      s.At("id").Fail(fmt::format("{} for {}, but Hugging Face assigns it id {} on load", t.id,
                                  tok::Quote(t.content), expected));
    }
    if (auto a = impl->added_by_content.find(t.content); a != impl->added_by_content.end()) {
      impl->added[a->second] = t;  // a repeated entry updates the flags
    } else {
      impl->added_by_content[t.content] = impl->added.size();
      impl->added.push_back(t);
    }
  }
  std::vector<const AddedToken*> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (size_t i = 0; i < impl->added.size(); ++i) {
    const AddedToken& t = impl->added[i];
    impl->added_by_id[t.id] = i;
    if (t.special) impl->special_contents.insert(t.content);
    if (t.normalized) {
      std::string n = t.content;
      tok::RegexBudget budget(n.size(), "normalization of added token");
      if (impl->normalizer) impl->normalizer->Apply(&n, &budget);
      if (n != t.content) impl->added_shown[t.id] = n;
      normalized.push_back(&t);
      normalized_patterns.push_back(n);
    } else {
      raw.push_back(&t);
      raw_patterns.push_back(t.content);
    }
  }
  impl->raw_matcher = std::make_unique<tok::AddedTokenMatcher>(raw, raw_patterns);
  impl->normalized_matcher =
      std::make_unique<tok::AddedTokenMatcher>(normalized, normalized_patterns);
  return Tokenizer(std::move(impl));
}

void Tokenizer::Impl::Model(const std::string& text, bool at_start, tok::RegexBudget* budget,
                            std::vector<int64_t>* ids) const {
  std::vector<tok::Piece> pieces{{text, at_start}};
  if (pre_tokenizer) pre_tokenizer->Apply(&pieces, budget);
  for (const tok::Piece& p : pieces) model->Tokenize(p.text, ids);
}

std::vector<int64_t> Tokenizer::Encode(std::string_view text) const {
  size_t bad = 0;
  CEMOE_CHECK(tok::IsValidUtf8(text, &bad), "text to encode is not valid UTF-8 (byte {})", bad);
  const Impl& m = *impl_;
  // One budget for every regex search of this Encode (regex.h).
  tok::RegexBudget budget(text.size(), "encode");
  std::vector<int64_t> ids;
  for (const auto& seg : m.raw_matcher->Split(text)) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    std::string normalized(text.substr(seg.begin, seg.end - seg.begin));
    if (m.normalizer) m.normalizer->Apply(&normalized, &budget);
    for (const auto& sub : m.normalized_matcher->Split(normalized)) {
      if (sub.id >= 0) {
        ids.push_back(sub.id);
      } else {
        m.Model(normalized.substr(sub.begin, sub.end - sub.begin), seg.begin == 0 && sub.begin == 0,
                &budget, &ids);
      }
    }
  }
  return ids;
}

std::string Tokenizer::Decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    // An id outside the vocabulary is dropped, as tokenizers' decode does (its filter_map over
    // id_to_token): a model's embedding is often larger than its tokenizer (OLMoE 50304 vs
    // 50280 ids), and generation may sample the extra ids.
    std::optional<std::string> t = IdToToken(id);
    if (!t.has_value()) continue;
    if (skip_special_tokens && m.special_contents.count(*t)) continue;
    tokens.push_back(std::move(*t));
  }
  if (!m.decoder) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) joined += (i ? " " : "") + tokens[i];
    return joined;
  }
  size_t bytes = 0;
  for (const std::string& t : tokens) bytes += t.size();
  tok::RegexBudget budget(bytes, "decode");
  m.decoder->Apply(&tokens, &budget);
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

std::optional<int64_t> Tokenizer::TokenToId(std::string_view token) const {
  auto it = impl_->added_by_content.find(std::string(token));
  if (it != impl_->added_by_content.end()) return impl_->added[it->second].id;
  return impl_->model->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int64_t id) const {
  if (auto it = impl_->added_by_id.find(id); it != impl_->added_by_id.end()) {
    auto shown = impl_->added_shown.find(id);
    return shown != impl_->added_shown.end() ? shown->second : impl_->added[it->second].content;
  }
  if (const std::string* t = impl_->model->IdToToken(id)) return *t;
  return std::nullopt;
}

int64_t Tokenizer::vocab_size() const {
  int64_t n = static_cast<int64_t>(impl_->model->vocab().size());
  for (const AddedToken& t : impl_->added) n += impl_->model->TokenToId(t.content) ? 0 : 1;
  return n;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }

const AddedToken* Tokenizer::FindAddedToken(std::string_view content) const {
  auto it = impl_->added_by_content.find(std::string(content));
  return it == impl_->added_by_content.end() ? nullptr : &impl_->added[it->second];
}

bool Tokenizer::IsSpecial(int64_t id) const {
  auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

const std::string& Tokenizer::post_processor_type() const { return impl_->post_processor_type; }
const std::string& Tokenizer::post_processor_json() const { return impl_->post_processor_json; }
const std::string& Tokenizer::source() const { return impl_->source; }

}  // namespace cemoe
