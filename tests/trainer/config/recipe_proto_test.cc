// recipe_proto_test.cc: the text-format parser's errors (file:line:column) and the protobuf <->
// RunConfig mapping: defaults for absent fields, and every proto field surviving the round trip.
#include "trainer/config/recipe_proto.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "model/check.h"

namespace cemoe {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

std::string ParseError(const std::string& text) {
  try {
    ParseRecipeText(text, "dir/x.textproto");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// An empty recipe gives RunConfig's documented defaults (values copied from docs/recipes.md).
TEST(RecipeProto, AbsentFieldsTakeTheDefaults) {
  const RunConfig c = RunConfigFromRecipe(ParseRecipeText("", "empty.textproto"));
  EXPECT_EQ(c.name, "");
  EXPECT_EQ(c.run_dir, "");
  EXPECT_EQ(c.seed, 0);
  EXPECT_EQ(c.model.path, "");
  EXPECT_EQ(c.model.top_k, 0);
  EXPECT_EQ(c.model.renormalize, "checkpoint");
  EXPECT_TRUE(c.data.train.empty());
  EXPECT_FALSE(c.data.first_turn_only);
  EXPECT_EQ(c.data.chat_template, "model");
  EXPECT_FALSE(c.data.train_on_prompt);
  EXPECT_EQ(c.data.max_length, 4096);
  EXPECT_TRUE(c.data.packing);
  EXPECT_EQ(c.data.bad_lines, "error");
  EXPECT_EQ(c.data.cache_dir, "");
  EXPECT_EQ(c.optim.lr, 1e-5);
  EXPECT_EQ(c.optim.weight_decay, 0.0);
  EXPECT_EQ(c.optim.beta1, 0.9);
  EXPECT_EQ(c.optim.beta2, 0.999);
  EXPECT_EQ(c.optim.eps, 1e-8);
  EXPECT_EQ(c.optim.no_decay, (std::vector<std::string>{"norm", "bias", "compressed_experts"}));
  EXPECT_EQ(c.optim.max_grad_norm, 1.0);
  EXPECT_EQ(c.schedule.kind, "cosine");
  EXPECT_EQ(c.schedule.warmup_steps, 0);
  EXPECT_EQ(c.schedule.warmup_ratio, 0.0);
  EXPECT_EQ(c.schedule.min_lr_ratio, 0.0);
  EXPECT_EQ(c.train.global_batch_size, 8);
  EXPECT_EQ(c.train.micro_batch_size, 1);
  EXPECT_EQ(c.train.max_steps, 0);
  EXPECT_EQ(c.train.epochs, 1.0);
  EXPECT_EQ(c.train.aux_loss_coef, 0.0);
  EXPECT_EQ(c.train.z_loss_coef, 0.0);
  EXPECT_TRUE(c.train.freeze.empty());
  EXPECT_FALSE(c.train.activation_checkpointing);
  EXPECT_EQ(c.train.precision, "fp32");
  EXPECT_EQ(c.train.device, "cpu");
  EXPECT_EQ(c.train.device_memory_gib, 0.0);
  EXPECT_EQ(c.train.max_nonfinite_steps, 10);
  EXPECT_EQ(c.parallel.ep, 1);
  EXPECT_EQ(c.parallel.dp, 0);
  EXPECT_EQ(c.parallel.placement, "contiguous");
  EXPECT_EQ(c.parallel.backend, "auto");
  EXPECT_EQ(c.parallel.collective_timeout_s, 0.0);
  EXPECT_EQ(c.parallel.capacity_factor, 0.0);
  EXPECT_EQ(c.parallel.placement_sample_batches, 4);
  EXPECT_EQ(c.checkpoint.every_steps, 0);
  EXPECT_EQ(c.checkpoint.keep_last, 2);
  EXPECT_TRUE(c.checkpoint.resume);
  EXPECT_EQ(c.checkpoint.max_shard_bytes, int64_t{5} * 1024 * 1024 * 1024);
  EXPECT_EQ(c.logging.every_steps, 1);
  EXPECT_TRUE(c.logging.tensorboard);
}

// A field written as 0, false or "" is a value, not an absent field (proto3 `optional`).
TEST(RecipeProto, ExplicitZeroIsNotTheDefault) {
  const RunConfig c = RunConfigFromRecipe(
      ParseRecipeText("data { packing: false max_length: 0 chat_template: \"\" }\n"
                      "parallel { ep: 0 placement_sample_batches: 0 }\n"
                      "checkpoint { keep_last: 0 resume: false }\n"
                      "optim { beta1: 0 no_decay: [\"ln\"] }\n",
                      "zero.textproto"));
  EXPECT_FALSE(c.data.packing);
  EXPECT_EQ(c.data.max_length, 0);
  EXPECT_EQ(c.data.chat_template, "");
  EXPECT_EQ(c.parallel.ep, 0);
  EXPECT_EQ(c.parallel.placement_sample_batches, 0);
  EXPECT_EQ(c.checkpoint.keep_last, 0);
  EXPECT_FALSE(c.checkpoint.resume);
  EXPECT_EQ(c.optim.beta1, 0.0);
  EXPECT_EQ(c.optim.no_decay, std::vector<std::string>{"ln"});
}

TEST(RecipeProto, UnknownFieldNamesFileLineColumn) {
  const std::string e = ParseError("name: \"a\"\noptim {\n  lr: 1e-5\n  lrr: 2\n}\n");
  // protobuf reports the position just after the unknown name ("  lrr" ends at column 5).
  EXPECT_NE(e.find("dir/x.textproto:4:6: "), std::string::npos) << e;
  EXPECT_NE(e.find("\"lrr\""), std::string::npos) << e;
}

TEST(RecipeProto, SyntaxErrorNamesFileLineColumn) {
  // "lr 1e-5": a scalar needs its colon; the error points at the number (column 6).
  const std::string e = ParseError("optim {\n  lr 1e-5\n}\n");
  EXPECT_NE(e.find("dir/x.textproto:2:6: "), std::string::npos) << e;
  const std::string unclosed = ParseError("model {\n  path: \"m\"\n");
  EXPECT_NE(unclosed.find("dir/x.textproto:3:"), std::string::npos) << unclosed;
}

TEST(RecipeProto, WrongTypeAndRepeatedFieldNameTheLine) {
  const std::string type = ParseError("seed: 1\noptim { lr: \"fast\" }\n");
  EXPECT_NE(type.find("dir/x.textproto:2:13: "), std::string::npos) << type;
  const std::string twice = ParseError("seed: 1\nseed: 2\n");
  EXPECT_NE(twice.find("dir/x.textproto:2:"), std::string::npos) << twice;
  EXPECT_NE(twice.find("seed"), std::string::npos) << twice;
}

// Sets every field of `m` (recursively, lists with two entries) to a value that differs from
// RunConfig's defaults: integers and doubles from a counter far from any default, strings that
// name the field, booleans all `flag` (the test runs with both, so every bool differs from its
// default in one of the runs).
void FillEveryField(Message* m, bool flag, int* counter) {
  const auto* d = m->GetDescriptor();
  const auto* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    const int copies = f->is_repeated() ? 2 : 1;
    for (int j = 0; j < copies; ++j) {
      const int n = ++*counter;
      const bool rep = f->is_repeated();
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_MESSAGE:
          FillEveryField(rep ? r->AddMessage(m, f) : r->MutableMessage(m, f), flag, counter);
          break;
        case FieldDescriptor::CPPTYPE_INT32:
          rep ? r->AddInt32(m, f, 1000 + n) : r->SetInt32(m, f, 1000 + n);
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          rep ? r->AddInt64(m, f, 100000 + n) : r->SetInt64(m, f, 100000 + n);
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
          rep ? r->AddDouble(m, f, 0.125 + n) : r->SetDouble(m, f, 0.125 + n);
          break;
        case FieldDescriptor::CPPTYPE_BOOL:
          rep ? r->AddBool(m, f, flag) : r->SetBool(m, f, flag);
          break;
        case FieldDescriptor::CPPTYPE_STRING: {
          const std::string s = f->full_name() + "#" + std::to_string(n);
          rep ? r->AddString(m, f, s) : r->SetString(m, f, s);
          break;
        }
        default:
          FAIL() << "recipe.proto field of an unexpected type: " << f->full_name();
      }
    }
  }
}

TEST(RecipeProto, EveryFieldSurvivesProtoToRunConfigToProto) {
  for (const bool flag : {false, true}) {
    recipe::Recipe original;
    int counter = 0;
    FillEveryField(&original, flag, &counter);
    ASSERT_GT(counter, 50);  // the walk reached the whole schema
    const recipe::Recipe back = RecipeFromRunConfig(RunConfigFromRecipe(original));
    std::string diff;
    google::protobuf::util::MessageDifferencer differ;
    differ.ReportDifferencesToString(&diff);
    EXPECT_TRUE(differ.Compare(original, back)) << "bools " << flag << ":\n" << diff;
  }
}

// RecipeFromRunConfig sets every field, defaults included, so a resolved recipe is complete.
TEST(RecipeProto, RecipeFromRunConfigSetsEveryScalar) {
  const recipe::Recipe r = RecipeFromRunConfig(RunConfig{});
  EXPECT_TRUE(r.has_name() && r.has_run_dir() && r.has_seed());
  EXPECT_TRUE(r.model().has_top_k() && r.model().has_renormalize());
  EXPECT_TRUE(r.data().has_packing() && r.data().packing());
  EXPECT_TRUE(r.optim().has_lr());
  EXPECT_EQ(r.optim().lr(), 1e-5);
  EXPECT_EQ(r.optim().no_decay_size(), 3);
  EXPECT_TRUE(r.parallel().has_ep());
  EXPECT_EQ(r.parallel().ep(), 1);
  EXPECT_EQ(r.checkpoint().max_shard_bytes(), int64_t{5} << 30);
}

}  // namespace
}  // namespace cemoe
