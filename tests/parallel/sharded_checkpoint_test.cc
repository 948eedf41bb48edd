// sharded_checkpoint_test.cc: Hugging Face folders written and read under expert parallelism
// (parallel/sharded_checkpoint.h), under mpiexec -n 1, 2 and 4. The reference is the whole model
// in one process (CausalLM + InitRandom) and its SaveHfCheckpoint folder:
//   - a save from any ep and placement holds exactly the reference's tensor names with identical
//     bytes, experts named by global id, plus the placement in placement.json;
//   - a folder saved at one ep and placement loads at every other ep and placement with each rank
//     holding only its experts, and gives the reference's logits;
//   - placement.json is reused at the same ep and policy and ignored otherwise;
//   - a re-save replaces the folder whole; leftovers of an interrupted save do no harm; bad
//     input fails on every rank with the path named, and no rank hangs.
#include "parallel/sharded_checkpoint.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "model/causal_lm.h"
#include "model/check.h"
#include "model/config.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"
#include "parallel/model_sharding.h"
#include "tests/parallel/mpi_test_env.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kBatch = 4;  // global rows, split over the world
constexpr int64_t kSeq = 10;
constexpr uint64_t kShardBytes = 64 * 1024;  // several shards per writing rank

ModelConfig TinyConfig() { return PresetConfig("olmoe", "tiny"); }

CausalLM Reference() {
  CausalLM model(TinyConfig());
  model->InitRandom(11);
  return model;
}

// A folder name every rank agrees on (rank 0's pid), under the system temp folder.
std::string SharedTempDir(ProcessGroups& groups, const std::string& stem) {
  std::vector<double> pid{groups.world_rank() == 0 ? static_cast<double>(::getpid()) : 0.0};
  groups.world().AllReduceHost(pid, ReduceOp::kSum);
  return (fs::temp_directory_path() /
          fmt::format("cemoe_ckpt_{}_{}", static_cast<int64_t>(pid[0]), stem))
      .string();
}

// This rank's rows of a fixed global batch.
at::Tensor MyRows(ProcessGroups& groups) {
  at::Tensor all = at::arange(kBatch * kSeq, at::kLong).view({kBatch, kSeq}).mul(37).remainder(128);
  const int64_t per = kBatch / groups.world_size();
  return all.slice(0, groups.world_rank() * per, (groups.world_rank() + 1) * per);
}

// A sharded copy of `ref` (its held experts, same values) under `placement`.
CausalLM ShardedCopy(CausalLMImpl& ref, ProcessGroups& groups, const ModelPlacement& placement) {
  std::vector<std::vector<int64_t>> held;
  for (const ExpertPlacement& p : placement.layers)
    held.push_back(p.experts_of_rank[groups.ep_rank()]);
  CausalLM model(ref.config(), held);
  at::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> src;
  for (const auto& item : ref.named_parameters(true)) src[item.key()] = item.value();
  for (auto& item : model->named_parameters(true)) item.value().copy_(src.at(item.key()));
  ShardExperts(*model, groups, placement.layers);
  return model;
}

// Every placement the test uses: the three policies, balanced from a skewed synthetic load (one
// that measuring the tiny model would not give, so a reused placement.json is recognisable).
std::vector<ModelPlacement> Placements(int ep) {
  const ModelConfig c = TinyConfig();
  std::vector<std::vector<int64_t>> load(c.num_hidden_layers);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (int64_t e = 0; e < c.num_experts; ++e) load[l].push_back((e * 7 + l * 3) % 11 + 1);
  }
  std::vector<ModelPlacement> out;
  for (PlacementPolicy p :
       {PlacementPolicy::kContiguous, PlacementPolicy::kRoundRobin, PlacementPolicy::kBalanced}) {
    out.push_back({p, PlaceExperts(c.num_hidden_layers, c.num_experts, ep, p, load)});
  }
  return out;
}

TEST(ShardedCheckpoint, SaveFromAnyPlacementWritesTheWholeModelByGlobalId) {
  CausalLM ref = Reference();
  std::map<std::string, at::Tensor> want;  // Hugging Face name -> float32 value
  for (const auto& item : ref->named_parameters(true)) {
    want[ToHfName(ref->config(), item.key())] = item.value();
  }
  for (int ep : test::EpSizes(test::Session().world_size())) {
    ProcessGroups groups(test::Session(), test::TestOptions(ep));
    const std::string dir = SharedTempDir(groups, "save");
    for (const ModelPlacement& placement : Placements(ep)) {
      SCOPED_TRACE(fmt::format("ep {} {}", ep, PlacementPolicyName(placement.policy)));
      CausalLM model = ShardedCopy(*ref, groups, placement);
      SaveExpertParallelCheckpoint(*model, groups, placement, dir, kShardBytes);

      ShardedCheckpoint saved(dir);
      std::vector<std::string> names = saved.Names();
      ASSERT_EQ(names.size(), want.size());
      uint64_t bytes = 0;
      for (const std::string& name : names) {
        ASSERT_TRUE(want.count(name)) << name;
        EXPECT_TRUE(at::equal(saved.Get(name), want.at(name))) << name;
        bytes += saved.Info(name).num_bytes();
      }
      ASSERT_TRUE(saved.total_size().has_value());
      EXPECT_EQ(*saved.total_size(), bytes);
      EXPECT_GT(saved.ShardFiles().size(), static_cast<size_t>(ep));  // small shards: several

      std::optional<ModelPlacement> read = LoadPlacementFile(dir, 2, 8);
      ASSERT_TRUE(read.has_value());
      EXPECT_EQ(read->policy, placement.policy);
      for (size_t l = 0; l < placement.layers.size(); ++l) {
        EXPECT_EQ(read->layers[l].experts_of_rank, placement.layers[l].experts_of_rank);
      }
      EXPECT_EQ(LoadModelConfig(dir).num_experts, 8);
      groups.world().Barrier();  // everyone has read before the next save replaces the folder
    }
    if (groups.world_rank() == 0) fs::remove_all(dir);
  }
}

TEST(ShardedCheckpoint, LoadsAtAnyEpAndPlacementWithOnlyItsExpertsAndTheSameLogits) {
  CausalLM ref = Reference();
  ref->eval();
  const int world = test::Session().world_size();
  std::string dir;
  {
    ProcessGroups groups(test::Session(), test::TestOptions(world));
    dir = SharedTempDir(groups, "load");
    const ModelPlacement saved = Placements(world)[1];  // round_robin at ep = world
    CausalLM model = ShardedCopy(*ref, groups, saved);
    SaveExpertParallelCheckpoint(*model, groups, saved, dir, kShardBytes);
  }
  for (int ep : test::EpSizes(world)) {
    ProcessGroups groups(test::Session(), test::TestOptions(ep));
    const at::Tensor rows = MyRows(groups);
    at::Tensor want;
    {
      at::NoGradGuard no_grad;
      want = ref->forward(rows);
    }
    for (PlacementPolicy policy :
         {PlacementPolicy::kContiguous, PlacementPolicy::kRoundRobin, PlacementPolicy::kBalanced}) {
      SCOPED_TRACE(fmt::format("ep {} {}", ep, PlacementPolicyName(policy)));
      ModelPlacement placement = ChooseModelPlacement(dir, groups, policy, rows, 0);
      ASSERT_EQ(placement.layers.size(), 2u);
      EXPECT_EQ(placement.layers[0].ep, ep);
      CausalLM model = LoadExpertParallelModel(dir, groups, placement);
      int64_t expert_tensors = 0;
      for (const auto& item : model->named_parameters(true)) {
        expert_tensors += IsExpertParameterName(item.key());
      }
      EXPECT_EQ(expert_tensors, 2 * 3 * (8 / ep));  // layers x {gate, up, down} x local experts
      for (const MoeLayer& layer : model->moe_layers()) {
        EXPECT_EQ(layer->experts->expert_ids().size(), static_cast<size_t>(8 / ep));
      }
      model->eval();
      at::NoGradGuard no_grad;
      // Other expert batches and all-to-all orders: the additions of one forward pass.
      EXPECT_TRUE(
          test::SumsAgree(model->forward(rows), want, test::ForwardTerms(TinyConfig(), kSeq)));
      for (size_t li = 0; li < model->moe_layers().size(); ++li) {
        const MoeLayer layer = model->moe_layers()[li];
        // After a forward (which packs the layout again if the load replaced the parameters'
        // data, model/moe/expert_pack.h) the per-expert parameters, named by global id, are
        // views of the stacked compute layout, and both are the saved values bit for bit.
        const std::vector<ExpertParams> ps = layer->experts->params();
        EXPECT_TRUE(layer->experts->pack().IsPacked(ps)) << "layer " << li;
        const int64_t inter = layer->experts->intermediate();
        for (size_t l = 0; l < ps.size(); ++l) {
          const int64_t id = layer->experts->expert_ids()[l];
          Expert& want_e = ref->moe_layers()[li]->experts->expert(static_cast<size_t>(id));
          const at::Tensor stacked = layer->experts->pack().gate_up_L2ID()[l];
          EXPECT_TRUE(at::equal(ps[l].gate, want_e->gate_proj->weight)) << li << "." << id;
          EXPECT_TRUE(at::equal(stacked.narrow(0, inter, inter), want_e->up_proj->weight))
              << li << "." << id;
          EXPECT_TRUE(at::equal(layer->experts->pack().down_LDI()[l], want_e->down_proj->weight))
              << li << "." << id;
        }
      }
    }
  }
  ProcessGroups groups(test::Session(), test::TestOptions(1));
  groups.world().Barrier();
  if (groups.world_rank() == 0) fs::remove_all(dir);
}

TEST(ShardedCheckpoint, PlacementFileIsReusedOnlyAtTheSameEpAndPolicy) {
  CausalLM ref = Reference();
  const int world = test::Session().world_size();
  ProcessGroups groups(test::Session(), test::TestOptions(world));
  const std::string dir = SharedTempDir(groups, "reuse");
  const ModelPlacement balanced = Placements(world)[2];  // from the synthetic load
  CausalLM model = ShardedCopy(*ref, groups, balanced);
  SaveExpertParallelCheckpoint(*model, groups, balanced, dir, kShardBytes);
  const at::Tensor rows = MyRows(groups);

  ModelPlacement again = ChooseModelPlacement(dir, groups, PlacementPolicy::kBalanced, rows, 0);
  for (size_t l = 0; l < again.layers.size(); ++l) {
    EXPECT_EQ(again.layers[l].experts_of_rank, balanced.layers[l].experts_of_rank);
  }
  ModelPlacement other = ChooseModelPlacement(dir, groups, PlacementPolicy::kRoundRobin, rows, 0);
  EXPECT_EQ(other.policy, PlacementPolicy::kRoundRobin);
  const ExpertPlacement rr = MakePlacement(8, world, PlacementPolicy::kRoundRobin);
  EXPECT_EQ(other.layers[1].experts_of_rank, rr.experts_of_rank);
  groups.world().Barrier();
  if (groups.world_rank() == 0) fs::remove_all(dir);
}

TEST(ShardedCheckpoint, ResaveReplacesTheFolderAndBadInputFailsOnEveryRank) {
  CausalLM ref = Reference();
  const int world = test::Session().world_size();
  ProcessGroups groups(test::Session(), test::TestOptions(world));
  const std::string dir = SharedTempDir(groups, "resave");
  const ModelPlacement placement = Placements(world)[0];
  CausalLM model = ShardedCopy(*ref, groups, placement);
  SaveExpertParallelCheckpoint(*model, groups, placement, dir, /*max_shard_bytes=*/16 * 1024);
  const size_t many = ShardedCheckpoint(dir).ShardFiles().size();
  groups.world().Barrier();
  // A "<dir>.partial" that cemoe did not make (no marker inside) is never removed: the save
  // fails on every rank, naming it, and leaves it and <dir> alone.
  if (groups.world_rank() == 0) {
    fs::create_directories(dir + ".partial");
    std::ofstream(dir + ".partial/notes.txt") << "mine";
  }
  try {
    SaveExpertParallelCheckpoint(*model, groups, placement, dir, 1 << 30);
    ADD_FAILURE() << "a foreign staging folder was not refused";
  } catch (const Error& e) {
    if (groups.world_rank() == 0) {
      EXPECT_NE(std::string(e.what()).find("was not made by cemoe"), std::string::npos) << e.what();
    }
  }
  if (groups.world_rank() == 0) {
    EXPECT_TRUE(fs::exists(dir + ".partial/notes.txt"));
    EXPECT_EQ(ShardedCheckpoint(dir).ShardFiles().size(), many);
    fs::remove_all(dir + ".partial");
  }
  groups.world().Barrier();
  // Leftovers of an interrupted cemoe save must not matter; larger shards must leave no stale
  // ones.
  if (groups.world_rank() == 0) {
    fs::create_directories(dir + ".partial");
    std::ofstream(dir + ".partial/.cemoe-staging") << "";
    std::ofstream(dir + ".partial/model-00001-of-00009.safetensors") << "junk";
    fs::create_directories(dir + ".old");
    std::ofstream(dir + ".old/.cemoe-replaced") << "";
  }
  // A trailing slash names the same folder (the staging folder must not land inside it).
  SaveExpertParallelCheckpoint(*model, groups, placement, dir + "/", /*max_shard_bytes=*/1 << 30);
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    files.push_back(entry.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  const size_t shards = static_cast<size_t>(world);  // one per writing rank (dp group 0)
  EXPECT_LT(shards, many);
  EXPECT_EQ(files.size(), shards + (shards > 1 ? 1 : 0) + 2) << fmt::format("{}", files.size());
  EXPECT_EQ(ShardedCheckpoint(dir).Names().size(), ref->named_parameters(true).size());
  EXPECT_FALSE(fs::exists(dir + ".partial"));
  EXPECT_FALSE(fs::exists(dir + ".old"));
  groups.world().Barrier();

  // A folder whose parent cannot be made: every rank throws, naming it; none waits for the others.
  // (A file where a parent folder belongs: it cannot be created.)
  const std::string bad = dir + "/config.json/ckpt";
  try {
    SaveExpertParallelCheckpoint(*model, groups, placement, bad, 1 << 30);
    ADD_FAILURE() << "saving under a file did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    if (groups.world_rank() != 0) {
      // The others carry rank 0's own message (which names `bad`, checked above).
      EXPECT_NE(std::string(e.what()).find("rank 0 of " + std::to_string(world) + " failed: "),
                std::string::npos)
          << e.what();
    }
  }
  // A checkpoint that lacks an expert only the last rank holds: every rank fails at once.
  const std::string holed = dir + "-holed";
  const std::string missing = "model.layers.1.mlp.experts.7.up_proj.weight";  // rank 7 % world
  if (groups.world_rank() == 0) {
    ShardedCheckpoint full(dir);
    NamedTensors kept;
    for (const std::string& name : full.Names()) {
      if (name != missing) kept.emplace_back(name, full.Get(name));
    }
    SaveShardedSafetensors(holed, kept, 1 << 30);
    SaveModelConfig(LoadModelConfig(dir), holed);
  }
  groups.world().Barrier();
  try {
    LoadExpertParallelModel(holed, groups, Placements(world)[1]);  // round_robin
    ADD_FAILURE() << "a checkpoint missing " << missing << " loaded";
  } catch (const Error& e) {
    const std::string what = e.what();
    if (groups.ep_rank() == world - 1) {
      EXPECT_NE(what.find(missing), std::string::npos) << what;
    } else {
      // Every other rank names the failed rank and carries its message (the missing tensor).
      EXPECT_NE(what.find("loading " + holed + ": rank " + std::to_string(world - 1) + " of " +
                          std::to_string(world) + " failed: "),
                std::string::npos)
          << what;
      EXPECT_NE(what.find(missing), std::string::npos) << what;
    }
  }
  groups.world().Barrier();
  if (groups.world_rank() == 0) fs::remove_all(holed);
  // A placement for another ep, and a placement file for another model, are refused by name.
  const ModelPlacement wrong = Placements(1)[0];
  if (world > 1) {
    EXPECT_THROW(LoadExpertParallelModel(dir, groups, wrong), Error);
  }
  groups.world().Barrier();
  if (groups.world_rank() == 0) {
    std::ofstream(dir + "/placement.json") << R"({"format": "cemoe-placement-v1", "policy":
        "contiguous", "ep": 1, "layers": [{"num_experts": 8, "ep": 1,
        "experts_of_rank": [[0, 1, 2, 3, 4, 5, 6, 7]]}]})";
    try {
      LoadPlacementFile(dir, 2, 8);
      ADD_FAILURE() << "a placement file with 1 layer for 2 layers was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("placement.json: field \"layers\" holds 1"),
                std::string::npos)
          << e.what();
    }
    fs::remove_all(dir);
  }
}

}  // namespace
}  // namespace cemoe
