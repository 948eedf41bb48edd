// chat_render: the C++ side of the chat template oracle (chat_template_oracle.py).
//
//   chat_render REQUEST.json RESULT.json
//
// REQUEST: {"cases": [{"template": T, "messages": [{"role", "content"}...],
//                      "add_generation_prompt": bool, "segments": bool}, ...]}
// with T one of {"builtin": name, "bos_token": s, "eos_token": s},
//               {"folder": dir}, {"source": jinja, "bos_token": s, "eos_token": s}.
// RESULT: {"results": [{"text": rendering, "segments": [[text, assistant], ...] (when asked),
//                       "cache_key": key} or {"error": message}, ...]}, one per case, in order.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "model/check.h"
#include "model/json_file.h"
#include "trainer/data/chat_template.h"

namespace {

cemoe::ChatTemplate Load(const nlohmann::json& t) {
  if (t.contains("builtin")) {
    return cemoe::ChatTemplate::Builtin(t["builtin"].get<std::string>(), t.value("bos_token", ""),
                                        t.value("eos_token", ""));
  }
  if (t.contains("folder"))
    return cemoe::ChatTemplate::FromModelFolder(t["folder"].get<std::string>());
  return cemoe::ChatTemplate::FromSource(t["source"].get<std::string>(), t.value("where", "source"),
                                         t.value("bos_token", ""), t.value("eos_token", ""));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: chat_render REQUEST.json RESULT.json\n";
    return 2;
  }
  try {
    const nlohmann::json request = cemoe::ReadJsonFile(argv[1], "request");
    nlohmann::json results = nlohmann::json::array();
    for (const auto& c : request.at("cases")) {
      nlohmann::json r;
      try {
        const cemoe::ChatTemplate t = Load(c.at("template"));
        std::vector<cemoe::ChatMessage> messages;
        for (const auto& m : c.at("messages")) {
          messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
        }
        r["text"] = t.Render(messages, c.value("add_generation_prompt", false));
        r["cache_key"] = t.CacheKey();
        if (c.value("segments", false)) {
          nlohmann::json segs = nlohmann::json::array();
          for (const auto& s : t.RenderForTraining(messages)) segs.push_back({s.text, s.assistant});
          r["segments"] = segs;
        }
      } catch (const cemoe::Error& e) {
        r = {{"error", e.what()}};
      }
      results.push_back(r);
    }
    std::ofstream out(argv[2], std::ios::binary);
    out << nlohmann::json{{"results", results}}.dump();
    CEMOE_CHECK(out.good(), "cannot write {}", argv[2]);
  } catch (const std::exception& e) {
    std::cerr << "chat_render: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
