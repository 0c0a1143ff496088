// The seeds' loading options through the real server (issue 17): every loading_strategy
// on the default model's f32 Hugging Face directory (made at test time, as
// default_hf_test.cc does, by tests/reference/make_hf_from_gguf.py in .venv-hf) gives the
// same greedy tokens; full and low_memory hold no file-backed weights, unified_memory and
// streaming hold all of them file-backed (ModelInfo and ingot_model_file_backed_bytes);
// low_memory's peak above its final RSS (the server process's VmHWM, reset before each
// load through /proc/PID/clear_refs) is below full's by a stated margin; use_safetensors
// picks between a directory's safetensors and pytorch_model.bin; bad values are
// INVALID_ARGUMENT (or FAILED_PRECONDITION for what the backend cannot do) naming the
// field. Registered as its own ctest entry (integration_loading): it makes 540 MB.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/integration/ingotd_process.h"
#include "tests/integration/default_hf_fixture.h"
#include "tests/integration/integration_fixture.h"

namespace ingot::testing {
namespace {


// kB of a /proc/PID/status line ("VmRSS:", "VmHWM:"), or -1.
int64_t StatusKb(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string k;
  while (in >> k) {
    if (k == key) {
      int64_t kb = -1;
      in >> kb;
      return kb;
    }
    std::getline(in, k);
  }
  return -1;
}

// Resets the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0).
bool ResetPeak(pid_t pid) {
  std::ofstream out("/proc/" + std::to_string(pid) + "/clear_refs");
  out << "5";
  return static_cast<bool>(out);
}

class LoadingTest : public DefaultHfDirTest {
 protected:
  v1::LoadModelRequest HfRequest(const std::string& name, v1::LoadingStrategy strategy) {
    v1::LoadModelRequest req;
    req.set_name(name);
    req.set_source(Dir());
    req.set_loading_strategy(strategy);
    req.set_context_length(256);  // a small KV pool: the RSS figures are the weights'
    req.set_kv_cache_bytes(1);
    return req;
  }

};

// Weights that can be read in place: every tensor kind but the norms (copied to f32
// vectors when the model is built).
int64_t MappableBytes(const v1::ModelInfo& m) {
  int64_t n = 0;
  for (const auto& k : m.tensor_kinds()) n += k.kind() == "norm" ? 0 : k.bytes();
  return n;
}

TEST_F(LoadingTest, EveryStrategyGivesTheSameGreedyTokens) {
  struct Case {
    v1::LoadingStrategy strategy;
    const char* name;
    bool file_backed;
  };
  std::vector<int32_t> reference;
  for (const Case& c : {Case{v1::LOADING_STRATEGY_UNIFIED_MEMORY, "unified_memory", true},
                        Case{v1::LOADING_STRATEGY_FULL, "full", false},
                        Case{v1::LOADING_STRATEGY_LOW_MEMORY, "low_memory", false},
                        Case{v1::LOADING_STRATEGY_STREAMING, "streaming", true}}) {
    SCOPED_TRACE(c.name);
    const std::string model = std::string("hf-") + c.name;
    const int64_t rss_before = StatusKb(server_->pid(), "VmRSS:");
    const auto t0 = std::chrono::steady_clock::now();
    LoadResult r = Load(channel(), HfRequest(model, c.strategy));
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    const v1::ModelInfo& info = r.messages.back().model();
    EXPECT_EQ(info.loading_strategy(), c.name);
    EXPECT_EQ(info.dtype(), "f32");
    EXPECT_GT(MappableBytes(info), 500'000'000);  // the f32 directory's embedding and linears
    EXPECT_EQ(info.file_backed_bytes(), c.file_backed ? MappableBytes(info) : 0);
    const std::string metrics = HttpGetMetrics(server_->metrics_port());
    EXPECT_EQ(MetricValue(metrics, "ingot_model_file_backed_bytes{device=\"cpu\",model=\"" + model + "\"}"),
              static_cast<double>(info.file_backed_bytes()))
        << metrics;
    // The served-models info: per model, and in the endpoint picker's LoRA shape.
    EXPECT_EQ(MetricValue(metrics, "ingot_model_info{backend=\"native\",device=\"cpu\",format=\"safetensors\","
                                   "loading_strategy=\"" + std::string(c.name) + "\",model=\"" + model +
                                   "\",quantization=\"\"}"),
              1)
        << metrics;
    EXPECT_GT(MetricValue(metrics, "ingot_lora_requests_info{max_lora=\"2\",running_lora_adapters=\"default," +
                                   model + "\",waiting_lora_adapters=\"\"}"),
              1.7e9)
        << metrics;
    const auto t1 = std::chrono::steady_clock::now();
    Generation g = Generate(channel(), Greedy(model, "The capital of France is", 16));
    const double first_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    ASSERT_TRUE(g.status.ok()) << g.status.error_message();
    std::printf("[ %s ] load %.2f s, first generation %.2f s, file-backed %lld bytes\n", c.name, load_s, first_s,
                static_cast<long long>(info.file_backed_bytes()));
    if (reference.empty()) {
      reference = g.ids;
      EXPECT_EQ(reference.size(), 16u);
    } else {
      EXPECT_EQ(g.ids, reference) << "greedy tokens differ from unified_memory's";
    }
    EXPECT_TRUE(Unload(channel(), model).ok());
    // Copies and mapping alike go back to the system once the unload has dropped the
    // model (after the call returns).
    EXPECT_TRUE(WaitFor([&] { return StatusKb(server_->pid(), "VmRSS:") < rss_before + 32 * 1024; }))
        << "RSS " << StatusKb(server_->pid(), "VmRSS:") << " kB after the unload, " << rss_before << " kB before";
  }
}

// The peak above the final RSS: full holds the file's pages and the copies together
// until all are copied; low_memory holds one module's pages above its copies. Stated
// margin: low_memory's transient peak is under half of full's, and under the largest
// module (the f32 embedding, 113 MB) plus 64 MiB of everything else a load allocates.
TEST_F(LoadingTest, LowMemoryPeaksBelowFull) {
  const pid_t pid = server_->pid();
  // An earlier test's unloads are finished (an unloading model stays listed until its
  // memory is freed), so the first baseline is not theirs.
  ASSERT_TRUE(WaitFor([&] { return ModelNames(channel()) == std::vector<std::string>{"default"}; }));
  std::map<std::string, int64_t> peak_extra_kb, growth_kb;
  int64_t largest_module = 0;
  for (const auto& [strategy, name] : {std::pair{v1::LOADING_STRATEGY_FULL, "full"},
                                       std::pair{v1::LOADING_STRATEGY_LOW_MEMORY, "low_memory"}}) {
    const std::string model = std::string("peak-") + name;
    const int64_t before = StatusKb(pid, "VmRSS:");
    ASSERT_TRUE(ResetPeak(pid)) << "cannot write /proc/" << pid << "/clear_refs";
    LoadResult r = Load(channel(), HfRequest(model, strategy));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    const int64_t peak = StatusKb(pid, "VmHWM:"), after = StatusKb(pid, "VmRSS:");
    ASSERT_GT(peak, 0);
    peak_extra_kb[name] = peak - after;
    growth_kb[name] = after - before;
    for (const auto& k : r.messages.back().model().tensor_kinds()) {
      if (k.kind() == "embedding") largest_module = k.bytes();
    }
    std::printf("[ %s ] RSS before %lld kB, after %lld kB, peak %lld kB: peak above final %lld kB\n", name,
                static_cast<long long>(before), static_cast<long long>(after), static_cast<long long>(peak),
                static_cast<long long>(peak - after));
    EXPECT_TRUE(Unload(channel(), model).ok());
    // The copies are anonymous mappings of their own: once the unload has dropped the
    // model, the RSS is back near where the load started (the next load's baseline).
    EXPECT_TRUE(WaitFor([&] { return StatusKb(pid, "VmRSS:") < before + 32 * 1024; }))
        << name << ": RSS " << StatusKb(pid, "VmRSS:") << " kB after the unload, " << before << " kB before the load";
  }
  ASSERT_GT(largest_module, 0);
  // Both end holding the copies (the mappable weights are 525,000 kB) above where they
  // started.
  EXPECT_GT(growth_kb["full"], 400'000);
  EXPECT_GT(growth_kb["low_memory"], 400'000);
  EXPECT_GT(peak_extra_kb["full"], 400'000) << "full holds the mapping and the copies together";
  EXPECT_LT(peak_extra_kb["low_memory"], peak_extra_kb["full"] / 2);
  EXPECT_LT(peak_extra_kb["low_memory"], largest_module / 1024 + 64 * 1024);
}

// use_safetensors on a directory with both model.safetensors (f32) and pytorch_model.bin
// (the same model pickled): unset and true read the safetensors, false the pickle; true
// refuses a directory of pickles only.
TEST_F(LoadingTest, UseSafetensorsPicksTheContainer) {
  const std::string dir = MakeTempDir();
  for (const auto& e : std::filesystem::directory_iterator(SourcePath("tests/data/formats/hf-f32"))) {
    std::filesystem::copy(e.path(), dir + "/" + e.path().filename().string());
  }
  std::filesystem::copy(SourcePath("tests/data/formats/hf-bin/pytorch_model.bin"), dir + "/pytorch_model.bin");
  struct Case {
    const char* name;
    std::optional<bool> use_safetensors;
    const char* format;
  };
  for (const Case& c : {Case{"st-unset", std::nullopt, "safetensors"}, Case{"st-true", true, "safetensors"},
                        Case{"st-false", false, "torch"}}) {
    v1::LoadModelRequest req;
    req.set_name(c.name);
    req.set_source(dir);
    if (c.use_safetensors) req.set_use_safetensors(*c.use_safetensors);
    LoadResult r = Load(channel(), req);
    ASSERT_TRUE(r.status.ok()) << c.name << ": " << r.status.error_message();
    EXPECT_EQ(r.messages.back().model().format(), c.format) << c.name;
    EXPECT_TRUE(Unload(channel(), c.name).ok());
  }
  std::filesystem::remove(dir + "/model.safetensors");
  v1::LoadModelRequest req;
  req.set_name("st-pickles");
  req.set_source(dir);
  req.set_use_safetensors(true);
  LoadResult r = Load(channel(), req);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(r.status.error_message().find("use_safetensors"), std::string::npos) << r.status.error_message();
  EXPECT_NE(r.status.error_message().find("pytorch_model.bin"), std::string::npos) << r.status.error_message();
  ExpectFailedThenUnload(channel(), "st-pickles", "FAILED_PRECONDITION");
  std::filesystem::remove_all(dir);
}

// Each bad value is refused with its code and the field's name; the ones found after the
// name was reserved leave a FAILED entry, as every failed load does.
TEST_F(LoadingTest, BadValuesNameTheField) {
  struct Case {
    const char* name;
    std::function<void(v1::LoadModelRequest*)> set;
    grpc::StatusCode code;
    const char* field;
    bool leaves_failed;
  };
  const std::vector<Case> cases = {
      {"bad-strategy", [](auto* r) { r->set_loading_strategy(static_cast<v1::LoadingStrategy>(9)); },
       grpc::StatusCode::INVALID_ARGUMENT, "loading_strategy", false},
      {"bad-workers", [](auto* r) { r->set_loading_workers(-2); }, grpc::StatusCode::INVALID_ARGUMENT,
       "loading_workers", false},
      {"bad-dtype", [](auto* r) { r->set_dtype("int3"); }, grpc::StatusCode::INVALID_ARGUMENT, "dtype", false},
      {"native-bf16", [](auto* r) { r->set_dtype("bf16"); }, grpc::StatusCode::FAILED_PRECONDITION, "dtype", false},
      {"bad-device", [](auto* r) { (*r->mutable_max_memory())["gpu7"] = 1 << 30; },
       grpc::StatusCode::INVALID_ARGUMENT, "max_memory", false},
      {"zero-cap", [](auto* r) { (*r->mutable_max_memory())["cpu"] = 0; }, grpc::StatusCode::INVALID_ARGUMENT,
       "max_memory[cpu]", false},
      {"small-cap", [](auto* r) { (*r->mutable_max_memory())["cpu"] = 1'000'000; },
       grpc::StatusCode::RESOURCE_EXHAUSTED, "max_memory[cpu]", true},
      {"stream-quantize",
       [](auto* r) {
         r->set_loading_strategy(v1::LOADING_STRATEGY_STREAMING);
         r->mutable_quantization()->set_method("hqq");
         r->mutable_quantization()->set_bits(4);
       },
       grpc::StatusCode::FAILED_PRECONDITION, "loading_strategy", false},
  };
  for (const Case& c : cases) {
    v1::LoadModelRequest req;
    req.set_name(c.name);
    req.set_source(DefaultModelPath());
    c.set(&req);
    LoadResult r = Load(channel(), req);
    EXPECT_EQ(r.status.error_code(), c.code) << c.name << ": " << r.status.error_message();
    EXPECT_NE(r.status.error_message().find(c.field), std::string::npos) << c.name << ": " << r.status.error_message();
    if (c.leaves_failed) {
      ExpectFailedThenUnload(channel(), c.name, "RESOURCE_EXHAUSTED");
    } else {
      EXPECT_EQ(ModelNames(channel()), std::vector<std::string>{"default"}) << c.name;
    }
  }
  // PlanLoad says a load over its max_memory would not fit, and why.
  {
    v1::LoadModelRequest capped;
    capped.set_name("capped");
    capped.set_source(DefaultModelPath());
    (*capped.mutable_max_memory())["cpu"] = 1'000'000;
    grpc::ClientContext context;
    context.set_deadline(In(60));
    v1::PlanLoadResponse plan;
    ASSERT_TRUE(v1::ModelService::NewStub(channel())->PlanLoad(&context, capped, &plan).ok());
    EXPECT_FALSE(plan.fits());
    ASSERT_EQ(plan.warnings_size(), 1);
    EXPECT_NE(plan.warnings(0).find("max_memory[cpu] = 1000000"), std::string::npos) << plan.warnings(0);
  }
  // On cpu, offload_to_cpu has nothing to do, and says so; a cap the model fits under is
  // reported.
  v1::LoadModelRequest req;
  req.set_name("offload");
  req.set_source(DefaultModelPath());
  req.set_offload_to_cpu(true);
  (*req.mutable_max_memory())["cpu"] = int64_t{4} << 30;
  LoadResult r = Load(channel(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_TRUE(r.messages.back().model().offload_to_cpu());
  EXPECT_EQ(r.messages.back().model().max_memory_bytes(), int64_t{4} << 30);
  EXPECT_NE(r.messages.back().model().loading_note().find("offload_to_cpu"), std::string::npos);
  EXPECT_TRUE(Unload(channel(), "offload").ok());
}

}  // namespace
}  // namespace ingot::testing
