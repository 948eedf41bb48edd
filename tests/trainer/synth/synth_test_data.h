// synth_test_data.h: one small synthetic data set per test binary (generated once, also written
// to a temporary folder so the evaluators can read it), and small file helpers.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "trainer/synth/synth.h"

namespace cemoe::synth::testing {

inline SynthOptions SmallOptions() {
  SynthOptions o;
  o.seed = 11;
  o.pretrain_docs = 400;
  o.sft_examples = 100;
  o.eval_examples = 6;
  return o;
}

// The data of SmallOptions(), written once under <temp>/cemoe_synth_<pid>.
struct SmallSet {
  std::string dir;
  SynthData data;
};

inline const SmallSet& Small() {
  static const SmallSet set = [] {
    SmallSet s;
    s.dir = (std::filesystem::temp_directory_path() /
             ("cemoe_synth_" + std::to_string(::getpid())))
                .string();
    std::filesystem::remove_all(s.dir);
    s.data = WriteSynthData(s.dir, SmallOptions());
    std::atexit([] { std::filesystem::remove_all(Small().dir); });
    return s;
  }();
  return set;
}

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline std::vector<nlohmann::json> ReadJsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

inline const SynthFile& FileOf(const SynthData& data, const std::string& path) {
  for (const SynthFile& f : data.files) {
    if (f.path == path) return f;
  }
  throw std::runtime_error("no generated file " + path);
}

}  // namespace cemoe::synth::testing
