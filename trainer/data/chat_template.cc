#include "trainer/data/chat_template.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "model/check.h"
#include "model/json_file.h"
#include "trainer/data/jinja_text.h"

namespace cemoe {

namespace {

namespace fs = std::filesystem;
using jinja::Value;

// The built-in templates, byte for byte as published (docs/chat-templates.md gives the sources).
// "\n" inside the Jinja string literals is a real newline, as in the JSON files.
struct BuiltinTemplate {
  const char* name;
  const char* source;
};
constexpr BuiltinTemplate kBuiltins[] = {
    // allenai/OLMoE-1B-7B-0924-Instruct tokenizer_config.json "chat_template" (Tulu format).
    {"tulu",
     "{{ bos_token }}{% for message in messages %}\n"
     "{% if message['role'] == 'system' %}\n"
     "{{ '<|system|>\n' + message['content'] }}\n"
     "{% elif message['role'] == 'user' %}\n"
     "{{ '<|user|>\n' + message['content'] }}\n"
     "{% elif message['role'] == 'assistant' %}\n"
     "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
     "{% endif %}\n"
     "{% if loop.last and add_generation_prompt %}\n"
     "{{ '<|assistant|>' }}\n"
     "{% endif %}\n"
     "{% endfor %}"},
    // microsoft/Phi-3.5-MoE-instruct tokenizer_config.json "chat_template".
    {"phi3",
     "{% for message in messages %}"
     "{% if message['role'] == 'system' and message['content'] %}"
     "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
     "{% elif message['role'] == 'user' %}"
     "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
     "{% elif message['role'] == 'assistant' %}"
     "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
     "{% endif %}{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"},
    // ChatML: transformers' former PreTrainedTokenizerBase.default_chat_template.
    {"chatml",
     "{% for message in messages %}"
     "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
     "{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"},
    // No template: the messages' texts concatenated, EOS after each assistant text (so packed
    // pretraining documents, format "text", end in EOS as a tokenizer's post-processor would).
    {"plain",
     "{{ bos_token }}{% for message in messages %}{{ message['content'] }}"
     "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"},
};

std::string ReadTextFile(const fs::path& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  CEMOE_CHECK(in.good(), "cannot read the {} {}", what, path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  CEMOE_CHECK(!in.bad(), "cannot read the {} {}", what, path.string());
  return buffer.str();
}

// A special token of tokenizer_config.json / special_tokens_map.json: a string, {"content": s}
// or null (not set: "").
std::string SpecialToken(const nlohmann::json& config, const char* key, const std::string& file) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    CEMOE_CHECK(content != it->end() && content->is_string(),
                "{}: \"{}\" must be a string or an object with a string \"content\", got {}", file,
                key, JsonExcerpt(*it));
    return content->get<std::string>();
  }
  CEMOE_FAIL("{}: \"{}\" must be a string, an object with \"content\", or null, got {}", file, key,
             JsonExcerpt(*it));
}

Value MessageValue(const ChatMessage& m, size_t index) {
  for (const auto* field : {&m.role, &m.content}) {
    size_t bad = 0;
    CEMOE_CHECK(jinja::IsValidUtf8(*field, &bad),
                "chat message {}: the {} is not valid UTF-8 "
                "(byte {})",
                index, field == &m.role ? "role" : "content", bad);
  }
  return Value::MakeDict({{"role", Value::String(m.role)}, {"content", Value::String(m.content)}});
}

jinja::List MessageValues(const std::vector<ChatMessage>& messages) {
  jinja::List out;
  out.reserve(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) out.push_back(MessageValue(messages[i], i));
  return out;
}

}  // namespace

ChatTemplate ChatTemplate::FromSource(std::string jinja_source, std::string where,
                                      std::string bos_token, std::string eos_token) {
  jinja::Template compiled = jinja::Template::Parse(jinja_source, where);
  return ChatTemplate(std::make_shared<const State>(
      State{std::move(jinja_source), std::move(where), std::move(bos_token), std::move(eos_token),
            std::move(compiled)}));
}

std::vector<std::string> ChatTemplate::BuiltinNames() {
  std::vector<std::string> names;
  for (const auto& b : kBuiltins) names.emplace_back(b.name);
  return names;
}

ChatTemplate ChatTemplate::Builtin(const std::string& name, std::string bos_token,
                                   std::string eos_token) {
  for (const auto& b : kBuiltins) {
    if (name == b.name) {
      return FromSource(b.source, fmt::format("builtin '{}'", name), std::move(bos_token),
                        std::move(eos_token));
    }
  }
  CEMOE_FAIL("unknown built-in chat template '{}' (known: {})", Excerpt(name, 60),
             fmt::join(BuiltinNames(), ", "));
}

ChatTemplate ChatTemplate::FromModelFolder(const std::string& dir) {
  const fs::path folder(dir);
  CEMOE_CHECK(fs::is_directory(folder), "chat template: {} is not a folder", dir);
  const fs::path config_path = folder / "tokenizer_config.json";
  nlohmann::json config = nlohmann::json::object();
  if (fs::exists(config_path)) {
    config = ReadJsonFile(config_path.string(), "tokenizer config");
    CEMOE_CHECK(config.is_object(), "{}: expected a JSON object, got {}", config_path.string(),
                JsonExcerpt(config));
  }

  // transformers 5.23 (tokenization_utils_base.py _from_pretrained): chat_template.jinja is the
  // "default" template, then additional_chat_templates/<name>.jinja by name; any of these
  // replace the config's "chat_template".
  std::map<std::string, std::pair<std::string, std::string>> files;  // name -> (source, where)
  const fs::path jinja_path = folder / "chat_template.jinja";
  if (fs::exists(jinja_path)) {
    files["default"] = {ReadTextFile(jinja_path, "chat template"), jinja_path.string()};
  }
  const fs::path extra_dir = folder / "additional_chat_templates";
  if (fs::is_directory(extra_dir)) {
    for (const auto& entry : fs::directory_iterator(extra_dir)) {
      const fs::path& p = entry.path();
      if (p.extension() != ".jinja") continue;
      files[p.stem().string()] = {ReadTextFile(p, "chat template"), p.string()};
    }
  }

  std::string source;
  std::string where;
  if (!files.empty()) {
    auto it = files.find("default");
    if (it == files.end()) {
      std::vector<std::string> names;
      for (const auto& f : files) names.push_back(f.first);
      CEMOE_FAIL(
          "chat template: {} has named templates ({}) in additional_chat_templates/ but "
          "no default (chat_template.jinja)",
          dir, fmt::join(names, ", "));
    }
    source = it->second.first;
    where = it->second.second;
  } else {
    auto it = config.find("chat_template");
    CEMOE_CHECK(it != config.end() && !it->is_null(),
                "chat template: {} has no chat template (neither chat_template.jinja nor a "
                "\"chat_template\" in tokenizer_config.json)",
                dir);
    where = config_path.string() + " \"chat_template\"";
    if (it->is_string()) {
      source = it->get<std::string>();
    } else if (it->is_array()) {
      std::vector<std::string> names;
      for (const auto& entry : *it) {
        CEMOE_CHECK(entry.is_object() && entry.contains("name") && entry["name"].is_string() &&
                        entry.contains("template") && entry["template"].is_string(),
                    "{}: \"chat_template\" entries must be {{\"name\": str, \"template\": str}}, "
                    "got {}",
                    config_path.string(), JsonExcerpt(entry));
        const std::string name = entry["name"].get<std::string>();
        names.push_back(name);
        if (name == "default") source = entry["template"].get<std::string>();
      }
      CEMOE_CHECK(std::find(names.begin(), names.end(), "default") != names.end(),
                  "{}: \"chat_template\" lists templates ({}) but none named \"default\"",
                  config_path.string(), fmt::join(names, ", "));
      where += " (default)";
    } else {
      CEMOE_FAIL(
          "{}: \"chat_template\" must be a string or a list of {{\"name\", \"template\"}}, "
          "got {}",
          config_path.string(), JsonExcerpt(*it));
    }
  }

  return FromSource(std::move(source), std::move(where), ModelSpecialToken(dir, "bos_token"),
                    ModelSpecialToken(dir, "eos_token"));
}

std::string ModelSpecialToken(const std::string& dir, const char* key) {
  const fs::path folder(dir);
  const fs::path config_path = folder / "tokenizer_config.json";
  nlohmann::json config = nlohmann::json::object();
  if (fs::exists(config_path)) {
    config = ReadJsonFile(config_path.string(), "tokenizer config");
    CEMOE_CHECK(config.is_object(), "{}: expected a JSON object, got {}", config_path.string(),
                JsonExcerpt(config));
  }
  std::string token = SpecialToken(config, key, config_path.string());
  const fs::path map_path = folder / "special_tokens_map.json";
  if (!config.contains("added_tokens_decoder") && fs::exists(map_path)) {
    const nlohmann::json map = ReadJsonFile(map_path.string(), "special tokens map");
    CEMOE_CHECK(map.is_object(), "{}: expected a JSON object, got {}", map_path.string(),
                JsonExcerpt(map));
    if (map.contains(key)) token = SpecialToken(map, key, map_path.string());
  }
  return token;
}

std::string ChatTemplate::RenderPrefix(const jinja::List& messages, size_t count,
                                       bool add_generation_prompt) const {
  jinja::List values(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(count));
  std::map<std::string, Value> globals;
  globals["messages"] = Value::MakeList(std::move(values));
  globals["add_generation_prompt"] = Value::Bool(add_generation_prompt);
  globals["tools"] = Value::None();
  globals["documents"] = Value::None();
  if (!state_->bos_token.empty()) globals["bos_token"] = Value::String(state_->bos_token);
  if (!state_->eos_token.empty()) globals["eos_token"] = Value::String(state_->eos_token);
  return state_->compiled.Render(globals);
}

std::string ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) const {
  CEMOE_CHECK(!messages.empty(), "chat template {}: cannot render an empty conversation",
              state_->where);
  return RenderPrefix(MessageValues(messages), messages.size(), add_generation_prompt);
}

std::vector<ChatSegment> ChatTemplate::RenderForTraining(
    const std::vector<ChatMessage>& messages) const {
  CEMOE_CHECK(!messages.empty(), "chat template {}: cannot render an empty conversation",
              state_->where);
  const jinja::List values = MessageValues(messages);
  const std::string whole = RenderPrefix(values, values.size(), /*add_generation_prompt=*/false);
  std::vector<ChatSegment> segments;
  auto push = [&](std::string text, bool assistant) {
    if (!text.empty()) segments.push_back(ChatSegment{std::move(text), assistant});
  };
  size_t covered = 0;  // bytes of `whole` already in `segments`
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != "assistant") continue;
    const std::string prompt = RenderPrefix(values, i, /*add_generation_prompt=*/true);
    const std::string turn = RenderPrefix(values, i + 1, /*add_generation_prompt=*/false);
    CEMOE_CHECK(
        whole.compare(0, prompt.size(), prompt) == 0 && turn.compare(0, prompt.size(), prompt) == 0,
        "chat template {}: cannot find assistant message {} for training: the rendering "
        "of the messages before it with add_generation_prompt=true is not a prefix of the "
        "rendering with it (the template rewrites earlier text)",
        state_->where, i);
    std::string text = turn.substr(prompt.size());
    if (whole.compare(prompt.size(), text.size(), text) != 0) {
      // A template that ends the conversation with eos_token (phi3) writes it only after the
      // last message: a turn that is not last ends before it.
      const std::string& eos = state_->eos_token;
      const bool ends_with_eos = !eos.empty() && text.size() >= eos.size() &&
                                 text.compare(text.size() - eos.size(), eos.size(), eos) == 0;
      const size_t body = ends_with_eos ? text.size() - eos.size() : 0;
      CEMOE_CHECK(ends_with_eos && i + 1 < messages.size() &&
                      whole.compare(prompt.size(), body, text, 0, body) == 0,
                  "chat template {}: cannot find assistant message {} for training: its "
                  "rendering as the last message ({}) is not what the whole conversation has at "
                  "that place ({})",
                  state_->where, i, Excerpt(text, 120),
                  Excerpt(std::string_view(whole).substr(prompt.size(), text.size()), 120));
      text.resize(body);
    }
    CEMOE_CHECK(prompt.size() >= covered,
                "chat template {}: assistant message {} starts inside the previous assistant "
                "message's text",
                state_->where, i);
    push(whole.substr(covered, prompt.size() - covered), false);
    covered = prompt.size() + text.size();
    push(std::move(text), true);
  }
  push(whole.substr(covered), false);
  std::string joined;
  for (const auto& s : segments) joined += s.text;
  CEMOE_CHECK(joined == whole,
              "chat template {}: internal error: the training segments do not "
              "concatenate to the rendering",
              state_->where);
  return segments;
}

std::string ChatTemplate::CacheKey() const {
  return fmt::format("chat_template source {}:{}\nbos_token {}:{}\neos_token {}:{}",
                     state_->source.size(), state_->source, state_->bos_token.size(),
                     state_->bos_token, state_->eos_token.size(), state_->eos_token);
}

}  // namespace cemoe
