// override_test.cc: `--set path=value` by field path (trainer/config/override.h): scalars of each
// type, lists, indexed list elements and sections, and one error case per way it can go wrong.
#include "trainer/config/override.h"

#include <google/protobuf/descriptor.pb.h>
#include <gtest/gtest.h>

#include "model/check.h"
#include "recipes/recipe.pb.h"

namespace cemoe {
namespace {

recipe::Recipe Apply(std::initializer_list<const char*> assignments) {
  recipe::Recipe r;
  for (const char* a : assignments) ApplyOverride(&r, a);
  return r;
}

std::string ErrorOf(google::protobuf::Message* m, const std::string& assignment) {
  try {
    ApplyOverride(m, assignment);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}
std::string ErrorOf(const std::string& assignment) {
  recipe::Recipe r;
  return ErrorOf(&r, assignment);
}

#define EXPECT_HAS(text, part)                               \
  EXPECT_NE(std::string(text).find(part), std::string::npos) \
      << "missing [" << (part) << "] in: " << (text)

TEST(Override, Scalars) {
  const recipe::Recipe r =
      Apply({"optim.lr=2e-5", "parallel.ep=4", "seed=-3", "name=my-run", "data.packing=false",
             "train.activation_checkpointing=1", "data.chat_template=tulu",
             "checkpoint.max_shard_bytes=9000000000", "model.top_k=+2"});
  EXPECT_EQ(r.optim().lr(), 2e-5);
  EXPECT_EQ(r.parallel().ep(), 4);
  EXPECT_EQ(r.seed(), -3);
  EXPECT_EQ(r.name(), "my-run");
  EXPECT_TRUE(r.data().has_packing());
  EXPECT_FALSE(r.data().packing());
  EXPECT_TRUE(r.train().activation_checkpointing());
  EXPECT_EQ(r.data().chat_template(), "tulu");
  EXPECT_EQ(r.checkpoint().max_shard_bytes(), 9000000000);
  EXPECT_EQ(r.model().top_k(), 2);
  EXPECT_FALSE(r.has_train() && r.train().has_epochs());  // untouched fields stay absent
}

TEST(Override, LaterOverrideWinsAndValueMayHoldEquals) {
  const recipe::Recipe r =
      Apply({"optim.lr=1", "optim.lr=3", "data.train[0].path=a=b.jsonl", "data.cache_dir="});
  EXPECT_EQ(r.optim().lr(), 3.0);
  EXPECT_EQ(r.data().train(0).path(), "a=b.jsonl");
  EXPECT_TRUE(r.data().has_cache_dir());
  EXPECT_EQ(r.data().cache_dir(), "");
}

TEST(Override, ListsReplaceWholeOrByIndex) {
  recipe::Recipe r = Apply({"train.freeze=router,experts"});
  ASSERT_EQ(r.train().freeze_size(), 2);
  EXPECT_EQ(r.train().freeze(0), "router");
  EXPECT_EQ(r.train().freeze(1), "experts");
  ApplyOverride(&r, "train.freeze[1]=norms");      // replace
  ApplyOverride(&r, "train.freeze[2]=attention");  // append
  ASSERT_EQ(r.train().freeze_size(), 3);
  EXPECT_EQ(r.train().freeze(1), "norms");
  EXPECT_EQ(r.train().freeze(2), "attention");
  ApplyOverride(&r, "train.freeze=embeddings");  // the whole list again
  ASSERT_EQ(r.train().freeze_size(), 1);
  EXPECT_EQ(r.train().freeze(0), "embeddings");
  ApplyOverride(&r, "train.freeze=");  // empty list
  EXPECT_EQ(r.train().freeze_size(), 0);
  EXPECT_HAS(ErrorOf(&r, "train.freeze[1]=x"),
             "train.freeze has 0 entries; index 1 is past the end (the next new one is [0])");
}

TEST(Override, ListOfSectionsByIndex) {
  const recipe::Recipe r =
      Apply({"data.train[0].path=a.jsonl", "data.train[1].path=b.jsonl",
             "data.train[1].format=instruction", "data.train[0].messages_field=conv"});
  ASSERT_EQ(r.data().train_size(), 2);
  EXPECT_EQ(r.data().train(0).path(), "a.jsonl");
  EXPECT_EQ(r.data().train(0).messages_field(), "conv");
  EXPECT_EQ(r.data().train(1).path(), "b.jsonl");
  EXPECT_EQ(r.data().train(1).format(), "instruction");
  EXPECT_FALSE(r.data().train(0).has_format());
}

TEST(Override, UnknownFieldsListTheSection) {
  EXPECT_HAS(ErrorOf("optim.lrr=1"),
             "--set \"optim.lrr=1\": section optim has no field \"lrr\" (fields: lr, "
             "weight_decay, beta1, beta2, eps, no_decay, max_grad_norm)");
  EXPECT_HAS(ErrorOf("optimizer.lr=1"), "the recipe has no field \"optimizer\" (fields: name,");
  EXPECT_HAS(ErrorOf("data.train[0].file=x"), "section data.train[0] has no field \"file\"");
}

TEST(Override, BadValuesNameThePathAndValue) {
  EXPECT_HAS(ErrorOf("optim.lr=fast"),
             "--set \"optim.lr=fast\": optim.lr expects a finite number, got \"fast\"");
  EXPECT_HAS(ErrorOf("optim.lr=nan"), "optim.lr expects a finite number, got \"nan\"");
  EXPECT_HAS(ErrorOf("optim.lr=1e999"), "optim.lr expects a finite number, got \"1e999\"");
  EXPECT_HAS(ErrorOf("optim.lr="), "optim.lr expects a finite number, got \"\"");
  EXPECT_HAS(ErrorOf("parallel.ep=4.5"), "parallel.ep expects a 32-bit integer, got \"4.5\"");
  EXPECT_HAS(ErrorOf("parallel.ep=3000000000"),
             "parallel.ep expects a 32-bit integer, got \"3000000000\"");
  EXPECT_HAS(ErrorOf("seed=99999999999999999999"), "seed expects an integer");
  EXPECT_HAS(ErrorOf("data.packing=yes"), "data.packing expects true or false, got \"yes\"");
}

TEST(Override, PathShapeErrors) {
  EXPECT_HAS(ErrorOf("optim.lr"), "--set \"optim.lr\": expected section.field=value");
  EXPECT_HAS(ErrorOf("=1"), "expected section.field=value");
  EXPECT_HAS(ErrorOf("optim=1"), "optim is a section; set one of its fields (lr, weight_decay");
  EXPECT_HAS(ErrorOf("seed.x=1"), "seed is a value, not a section");
  EXPECT_HAS(ErrorOf("optim.lr[0]=1"), "optim.lr is not a list; drop the [0]");
  EXPECT_HAS(ErrorOf("data.train.path=x"),
             "data.train is a list; give an index, e.g. data.train[0].path");
  EXPECT_HAS(ErrorOf("data.train[2].path=x"),
             "data.train has 0 entries; index 2 is past the end (the next new one is [0])");
  EXPECT_HAS(ErrorOf("data.train[x].path=a"), "bad index in \"train[x]\"");
  EXPECT_HAS(ErrorOf("data.train[0.path=a"), "bad index in \"train[0\"");
  EXPECT_HAS(ErrorOf("optim..lr=1"), "empty field name in path \"optim..lr\"");
}

// Other field types, on protobuf's own descriptor messages: enums by name, and a list of numbers
// where a bad element leaves the list as it was.
TEST(Override, EnumsAndNumberLists) {
  google::protobuf::FieldDescriptorProto field;
  ApplyOverride(&field, "type=TYPE_INT32");
  EXPECT_EQ(field.type(), google::protobuf::FieldDescriptorProto::TYPE_INT32);
  EXPECT_HAS(ErrorOf(&field, "type=INT"), "type expects one of TYPE_DOUBLE, TYPE_FLOAT");

  google::protobuf::FileDescriptorProto file;
  ApplyOverride(&file, "public_dependency=1,2,3");
  ASSERT_EQ(file.public_dependency_size(), 3);
  EXPECT_EQ(file.public_dependency(2), 3);
  EXPECT_HAS(ErrorOf(&file, "public_dependency=4,x,6"),
             "public_dependency[1] expects a 32-bit integer, got \"x\"");
  ASSERT_EQ(file.public_dependency_size(), 3);
  EXPECT_EQ(file.public_dependency(0), 1);
}

}  // namespace
}  // namespace cemoe
