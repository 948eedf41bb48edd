// scripted_model.h: an EvalModel for task tests whose answers are written by the test: a
// completion function of (prompt, sample index) and a log-likelihood function of (context,
// continuation). It records every prompt and request it was given, so a test can check the
// prompts a task builds.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "trainer/eval/eval_model.h"

namespace cemoe::testing {

class ScriptedModel : public EvalModel {
 public:
  using CompleteFn = std::function<std::string(const std::string& prompt, int64_t sample)>;
  using ScoreFn = std::function<LogLikelihood(const LogLikelihoodRequest&)>;

  explicit ScriptedModel(CompleteFn complete, ScoreFn score = nullptr)
      : complete_(std::move(complete)), score_(std::move(score)) {}

  std::vector<Generation> Generate(const std::vector<std::string>& prompts,
                                   const SamplingOptions& options) override {
    std::vector<Generation> out;
    last_options = options;
    for (const std::string& p : prompts) {
      prompts_seen.push_back(p);
      for (int64_t j = 0; j < options.num_samples; ++j) {
        Generation g;
        g.text = complete_(p, j);
        // Stop strings as the engine applies them: cut at the first occurrence of any.
        size_t cut = std::string::npos;
        for (const std::string& s : options.stop) {
          const size_t at = g.text.find(s);
          if (at != std::string::npos && (cut == std::string::npos || at < cut)) cut = at;
        }
        g.finish_reason = cut == std::string::npos ? "eos" : "stop";
        if (cut != std::string::npos) g.text.resize(cut);
        g.num_tokens = static_cast<int64_t>(g.text.size());
        out.push_back(std::move(g));
      }
    }
    ++generate_calls;
    return out;
  }

  std::vector<LogLikelihood> LogLikelihoods(
      const std::vector<LogLikelihoodRequest>& requests) override {
    std::vector<LogLikelihood> out;
    for (const LogLikelihoodRequest& r : requests) {
      requests_seen.push_back(r);
      out.push_back(score_(r));
    }
    return out;
  }

  std::string FormatChat(const std::string& user_message) override {
    return "<|user|>\n" + user_message + "\n<|assistant|>\n";
  }
  std::string Describe() const override { return "scripted"; }

  std::vector<std::string> prompts_seen;
  std::vector<LogLikelihoodRequest> requests_seen;
  SamplingOptions last_options;
  int generate_calls = 0;

 private:
  CompleteFn complete_;
  ScoreFn score_;
};

}  // namespace cemoe::testing
