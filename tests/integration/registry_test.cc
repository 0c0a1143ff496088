// The registry a fleet can trust (issue 17), on servers of their own: a memory budget
// that holds two of three models, eviction of the least recently used idle one (never
// a streaming one, never a pinned one) with its reason, keep_alive expiry, a load that
// cannot fit (RESOURCE_EXHAUSTED, then FAILED with its error), WatchModels' order,
// PlanLoad against the real load, and the metrics and device listing that follow.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "tests/integration/integration_fixture.h"

namespace ingot::testing {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The default model with a short context and the smallest KV pool (one context, 17
// blocks): each copy is its weights plus ~6 MB.
v1::LoadModelRequest Small(const std::string& name) {
  v1::LoadModelRequest r;
  r.set_name(name);
  r.set_source(DefaultModelPath());
  r.set_context_length(256);
  r.set_kv_cache_bytes(1);
  return r;
}

v1::PlanLoadResponse Plan(const std::shared_ptr<grpc::Channel>& channel, const v1::LoadModelRequest& r,
                          grpc::Status* status) {
  grpc::ClientContext context;
  context.set_deadline(In(60));
  v1::PlanLoadResponse response;
  *status = v1::ModelService::NewStub(channel)->PlanLoad(&context, r, &response);
  return response;
}

v1::ModelInfo Info(const std::shared_ptr<grpc::Channel>& channel, const std::string& name) {
  grpc::ClientContext context;
  context.set_deadline(In(30));
  v1::GetModelRequest request;
  request.set_name(name);
  v1::GetModelResponse response;
  (void)v1::ModelService::NewStub(channel)->GetModel(&context, request, &response);
  return response.model();
}

// Collects WatchModels events on a thread until destroyed.
class Watcher {
 public:
  explicit Watcher(const std::shared_ptr<grpc::Channel>& channel) {
    reader_ = v1::ModelService::NewStub(channel)->WatchModels(&context_, v1::WatchModelsRequest());
    thread_ = std::thread([this] {
      v1::ModelEvent e;
      while (reader_->Read(&e)) {
        std::lock_guard lock(mu_);
        events_.push_back(e);
      }
    });
  }
  ~Watcher() {
    context_.TryCancel();
    thread_.join();
    (void)reader_->Finish();
  }
  std::vector<v1::ModelEvent> Events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  // "state/reason" of `name`'s transitions (snapshot entries left out), in order.
  std::vector<std::string> Of(const std::string& name) {
    std::vector<std::string> out;
    for (const v1::ModelEvent& e : Events()) {
      if (e.name() != name || e.snapshot()) continue;
      out.push_back(v1::ModelState_Name(e.state()).substr(sizeof("MODEL_STATE_") - 1) + "/" + e.reason());
    }
    return out;
  }
  bool Saw(const std::string& name, v1::ModelState state) {
    for (const v1::ModelEvent& e : Events()) {
      if (e.name() == name && e.state() == state && !e.snapshot()) return true;
    }
    return false;
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::ModelEvent>> reader_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<v1::ModelEvent> events_;
};

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(DefaultModelPath())) {
      GTEST_SKIP() << "default model not fetched: " << DefaultModelPath();
    }
  }
  void TearDown() override {
    if (HasFailure() && server_.pid() > 0) std::cerr << "ingotd log:\n" << server_.ReadLog();
  }
  std::string Cli() { return INGOT_CLI_PATH; }
  IngotdProcess server_;
};

// PlanLoad answers from the checkpoint without loading, and its bytes are the ones
// the load then reports: weights, KV pool and their sum (workspace is stated as 0 and
// is not part of either figure).
TEST_F(RegistryTest, PlanLoadAgreesWithTheLoad) {
  server_.Start({"--threads", "2"});
  ASSERT_TRUE(server_.WaitServing(kStartTimeout)) << server_.ReadLog();
  grpc::Status status;
  const auto t0 = std::chrono::steady_clock::now();
  const v1::PlanLoadResponse plan = Plan(server_.channel(), Small("a"), &status);
  const double plan_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(plan.fits());
  EXPECT_TRUE(ModelNames(server_.channel()).empty()) << "a plan loaded something";
  EXPECT_EQ(plan.workspace_bytes(), 0);
  EXPECT_EQ(plan.total_bytes(), plan.weight_bytes() + plan.kv_cache_bytes());
  EXPECT_LT(plan_s, 5.0);
  LoadResult load = Load(server_.channel(), Small("a"));
  ASSERT_TRUE(load.status.ok()) << load.status.error_message();
  const v1::ModelInfo& m = load.messages.back().model();
  EXPECT_EQ(plan.weight_bytes(), m.weight_bytes());
  EXPECT_EQ(plan.kv_cache_bytes(), m.kv_cache_bytes());
  EXPECT_EQ(plan.kv_blocks(), m.kv_blocks_total());
  EXPECT_EQ(plan.total_bytes(), m.bytes_resident());
  EXPECT_EQ(plan.context_length(), m.context_length());
  // Quantizing while loading: the plan's weights are the quantizer's estimate, which
  // for hqq's affine groups is the exact size the load then holds.
  v1::LoadModelRequest hqq = Small("h");
  hqq.mutable_quantization()->set_method("hqq");
  hqq.mutable_quantization()->set_bits(4);
  const v1::PlanLoadResponse hqq_plan = Plan(server_.channel(), hqq, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  LoadResult hqq_load = Load(server_.channel(), hqq);
  ASSERT_TRUE(hqq_load.status.ok()) << hqq_load.status.error_message();
  EXPECT_EQ(hqq_plan.weight_bytes(), hqq_load.messages.back().model().weight_bytes());
  EXPECT_EQ(hqq_plan.total_bytes(), hqq_load.messages.back().model().bytes_resident());
  // A second plan under the same name says the load would be refused.
  const v1::PlanLoadResponse again = Plan(server_.channel(), Small("a"), &status);
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(again.warnings_size(), 1);
  EXPECT_THAT(again.warnings(0), HasSubstr("already loaded"));
  // The CLI prints the same figures.
  CommandResult cli = RunCommand({Cli(), "--server", server_.address(), "plan", "b", DefaultModelPath(),
                                  "--context-length", "256", "--kv-cache-bytes", "1", "--json"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_THAT(cli.out, HasSubstr("\"total_bytes\":\"" + std::to_string(plan.total_bytes()) + "\""));
}

// A budget of two and a half models: the third load evicts the least recently used
// idle model (memory_pressure), never the one streaming, and a stream's end counts as
// a use; a pinned model is never
// evicted; a load that cannot fit is RESOURCE_EXHAUSTED naming device and bytes and
// stays listed FAILED with its error until unloaded; keep_alive unloads an idle model.
TEST_F(RegistryTest, BudgetEvictionPinningKeepAliveAndFailure) {
  int64_t one = 0;
  {
    IngotdProcess probe;
    probe.Start({"--threads", "2"});
    ASSERT_TRUE(probe.WaitServing(kStartTimeout)) << probe.ReadLog();
    grpc::Status status;
    one = Plan(probe.channel(), Small("x"), &status).total_bytes();
    ASSERT_TRUE(status.ok()) << status.error_message();
    probe.StopWith(SIGTERM, std::chrono::seconds(30));
  }
  ASSERT_GT(one, 0);
  const int64_t budget = one * 5 / 2;
  server_.Start({"--threads", "2", "--memory-budget-bytes", std::to_string(budget)});
  ASSERT_TRUE(server_.WaitServing(kStartTimeout)) << server_.ReadLog();
  auto channel = server_.channel();
  Watcher watch(channel);

  ASSERT_TRUE(Load(channel, Small("a")).status.ok());
  ASSERT_TRUE(Load(channel, Small("b")).status.ok());
  // a is the least recently used once b has served a request; then a streams.
  ASSERT_TRUE(Generate(channel, Greedy("b", "Hello", 2)).status.ok());
  std::atomic<bool> first{false};
  Generation streaming;
  std::thread stream([&] {
    streaming = Generate(channel, Greedy("a", kCountingPrompt, 200), false, [&] { first = true; });
  });
  ASSERT_TRUE(WaitFor([&] { return first.load(); }));
  // The plan names b, not a: a is older but busy.
  grpc::Status status;
  const v1::PlanLoadResponse plan = Plan(channel, Small("c"), &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(plan.fits());
  ASSERT_EQ(plan.evictions_size(), 1);
  EXPECT_EQ(plan.evictions(0).name(), "b");
  LoadResult c = Load(channel, Small("c"));
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_THAT(ModelNames(channel), ElementsAre("a", "c"));
  stream.join();
  EXPECT_TRUE(streaming.status.ok()) << streaming.status.error_message();
  EXPECT_TRUE(IsFinal(streaming.last.finish_reason()));
  ASSERT_TRUE(WaitFor([&] { return watch.Saw("b", v1::MODEL_STATE_GONE); }));
  EXPECT_THAT(watch.Of("b"), ElementsAre("LOADING/load_request", "READY/load_request",
                                         "UNLOADING/memory_pressure", "GONE/memory_pressure"));
  EXPECT_EQ(Health(channel, "b"), HealthStatus::NOT_SERVING);

  // Least recently used: c was published while a still streamed, so a's stream end is
  // its last use and c goes. Then the pinned p stays whatever comes after; the idle
  // unpinned model goes instead.
  v1::LoadModelRequest pinned = Small("p");
  pinned.set_pinned(true);
  ASSERT_TRUE(Load(channel, pinned).status.ok());
  EXPECT_TRUE(Info(channel, "p").pinned());
  EXPECT_THAT(ModelNames(channel), ElementsAre("a", "p"));
  ASSERT_TRUE(WaitFor([&] { return watch.Saw("c", v1::MODEL_STATE_GONE); }));
  EXPECT_THAT(watch.Of("c"), ElementsAre("LOADING/load_request", "READY/load_request",
                                         "UNLOADING/memory_pressure", "GONE/memory_pressure"));
  ASSERT_TRUE(Load(channel, Small("d")).status.ok());  // evicts a, the only idle unpinned one
  EXPECT_THAT(ModelNames(channel), ElementsAre("d", "p"));
  ASSERT_TRUE(Load(channel, Small("e")).status.ok());  // evicts d, never p
  EXPECT_THAT(ModelNames(channel), ElementsAre("e", "p"));

  // Nothing evictable: e pinned too. The refusal names device and bytes; the entry
  // stays FAILED with the error, holds nothing, and goes on unload.
  ASSERT_TRUE(Unload(channel, "e").ok());
  v1::LoadModelRequest pinned2 = Small("q");
  pinned2.set_pinned(true);
  ASSERT_TRUE(Load(channel, pinned2).status.ok());
  LoadResult refused = Load(channel, Small("f"));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.status.error_message(),
              AllOf(HasSubstr("cpu"), HasSubstr(std::to_string(one)), HasSubstr("memory budget " +
                                                                                std::to_string(budget))));
  const v1::ModelInfo failed = Info(channel, "f");
  EXPECT_EQ(failed.state(), v1::MODEL_STATE_FAILED);
  EXPECT_THAT(failed.error(), HasSubstr("RESOURCE_EXHAUSTED"));
  EXPECT_EQ(failed.bytes_resident(), 0);
  EXPECT_THAT(ModelNames(channel), ElementsAre("f", "p", "q"));
  Generation on_failed = Generate(channel, Greedy("f", "Hello", 2));
  EXPECT_EQ(on_failed.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(Unload(channel, "f").ok());
  // The stream delivers the transition after UnloadModel has answered.
  ASSERT_TRUE(WaitFor([&] { return watch.Saw("f", v1::MODEL_STATE_GONE); }));
  EXPECT_THAT(watch.Of("f"), ElementsAre("LOADING/load_request", "FAILED/load_failed", "GONE/unload_request"));

  // GetServerInfo: the budget, what is used and free, and the models on the device.
  {
    grpc::ClientContext context;
    v1::GetServerInfoResponse info;
    ASSERT_TRUE(v1::ModelService::NewStub(channel)->GetServerInfo(&context, {}, &info).ok());
    const v1::DeviceInfo* cpu = nullptr;
    for (const v1::DeviceInfo& d : info.devices()) {
      if (d.name() == "cpu") cpu = &d;
    }
    ASSERT_NE(cpu, nullptr);
    EXPECT_EQ(cpu->budget_bytes(), budget);
    EXPECT_EQ(cpu->used_bytes(), Info(channel, "p").bytes_resident() + Info(channel, "q").bytes_resident());
    EXPECT_EQ(cpu->budget_free_bytes(), budget - cpu->used_bytes());
    EXPECT_THAT(std::vector<std::string>(cpu->models().begin(), cpu->models().end()), ElementsAre("p", "q"));
  }

  // keep_alive: an idle model with one second goes by itself, reason idle_timeout.
  ASSERT_TRUE(Unload(channel, "q").ok());
  v1::LoadModelRequest brief = Small("k");
  brief.set_keep_alive_seconds(1);
  ASSERT_TRUE(Load(channel, brief).status.ok());
  const auto loaded_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return watch.Saw("k", v1::MODEL_STATE_GONE); }));
  EXPECT_GE(std::chrono::steady_clock::now() - loaded_at, std::chrono::milliseconds(900));
  EXPECT_THAT(watch.Of("k"), ElementsAre("LOADING/load_request", "READY/load_request",
                                         "UNLOADING/idle_timeout", "GONE/idle_timeout"));

  // The metrics count each eviction by model and reason.
  const std::string metrics = HttpGetMetrics(server_.metrics_port());
  EXPECT_EQ(MetricValue(metrics, R"(ingot_model_evictions_total{device="cpu",model="b",reason="memory_pressure"})"), 1)
      << metrics;
  EXPECT_EQ(MetricValue(metrics, R"(ingot_model_evictions_total{device="cpu",model="a",reason="memory_pressure"})"), 1);
  EXPECT_EQ(MetricValue(metrics, R"(ingot_model_evictions_total{device="cpu",model="f",reason="load_failed"})"), 1);
  EXPECT_EQ(MetricValue(metrics, R"(ingot_model_evictions_total{device="cpu",model="k",reason="idle_timeout"})"), 1);
  EXPECT_EQ(MetricValue(metrics, R"(ingot_model_evictions_total{device="cpu",model="c",reason="memory_pressure"})"), 1);
  EXPECT_EQ(MetricValue(metrics, R"(ingot_model_evictions_total{device="cpu",model="e",reason="unload_request"})"), 1);
  // b, c, a, d (evicted), e, q (unloaded), k (idle): each freed once; f held nothing.
  EXPECT_EQ(MetricValue(metrics, "ingot_model_unload_duration_seconds_count"), 7);
  EXPECT_EQ(MetricValue(metrics, R"(ingot_model_load_duration_seconds_count{device="cpu",model="p"})"), 1);
  EXPECT_EQ(MetricValue(metrics, R"(ingot_model_state{device="cpu",model="p",state="ready"})"), 1);
}

// A load that fails after its name was taken (the tensor data cut off half way) holds
// nothing afterwards: listed FAILED with its error and 0 bytes, the device's used
// bytes as before, and the process's RSS back within 16 MiB of where it was (the
// model file is ~100 MB, so a leak of its mapping or a copy would show).
TEST_F(RegistryTest, AFailedLoadHoldsNothing) {
  server_.Start({"--threads", "2", "--model", "default=" + DefaultModelPath()});
  ASSERT_TRUE(server_.WaitServing(kStartTimeout)) << server_.ReadLog();
  const std::string dir = MakeTempDir();
  const std::string model = ReadFile(DefaultModelPath());
  const std::string cut = dir + "/cut.gguf";
  std::ofstream(cut, std::ios::binary) << model.substr(0, model.size() / 2);
  const std::string used = R"(ingot_device_memory_used_bytes{device="cpu"})";
  const std::string before = HttpGetMetrics(server_.metrics_port());
  Watcher watch(server_.channel());
  LoadResult r = Load(server_.channel(), "cut", cut);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << r.status.error_message();
  const v1::ModelInfo failed = Info(server_.channel(), "cut");
  EXPECT_EQ(failed.state(), v1::MODEL_STATE_FAILED);
  EXPECT_EQ(failed.error(), "INVALID_ARGUMENT: " + r.status.error_message());
  EXPECT_EQ(failed.bytes_resident(), 0);
  ASSERT_TRUE(WaitFor([&] { return watch.Saw("cut", v1::MODEL_STATE_FAILED); }));
  EXPECT_THAT(watch.Of("cut"), ElementsAre("LOADING/load_request", "FAILED/load_failed"));
  for (const v1::ModelEvent& e : watch.Events()) {
    if (e.name() == "cut" && e.state() == v1::MODEL_STATE_FAILED) {
      EXPECT_EQ(e.error(), failed.error());
    }
  }
  const std::string after = HttpGetMetrics(server_.metrics_port());
  EXPECT_EQ(MetricValue(after, used), MetricValue(before, used));
  EXPECT_LT(MetricValue(after, "process_resident_memory_bytes"),
            MetricValue(before, "process_resident_memory_bytes") + (16 << 20));
  EXPECT_EQ(MetricValue(after, R"(ingot_model_evictions_total{device="cpu",model="cut",reason="load_failed"})"), 1);
  // Loading the name again is a retry: the FAILED entry is replaced.
  LoadResult retry = Load(server_.channel(), "cut", DefaultModelPath());
  EXPECT_TRUE(retry.status.ok()) << retry.status.error_message();
  EXPECT_EQ(Info(server_.channel(), "cut").state(), v1::MODEL_STATE_READY);
  std::filesystem::remove_all(dir);
}

// WatchModels opens with a snapshot of every model (state and bytes), then streams.
TEST_F(RegistryTest, WatchStartsWithTheSnapshot) {
  server_.Start({"--threads", "2", "--model", "default=" + DefaultModelPath()});
  ASSERT_TRUE(server_.WaitServing(kStartTimeout)) << server_.ReadLog();
  Watcher watch(server_.channel());
  ASSERT_TRUE(WaitFor([&] { return !watch.Events().empty(); }));
  const v1::ModelEvent first = watch.Events().front();
  EXPECT_TRUE(first.snapshot());
  EXPECT_EQ(first.name(), "default");
  EXPECT_EQ(first.state(), v1::MODEL_STATE_READY);
  EXPECT_EQ(first.bytes(), first.model().bytes_resident());
  EXPECT_GT(first.bytes(), 0);
  CommandResult cli = RunCommand({Cli(), "--server", server_.address(), "--timeout", "2", "watch"});
  EXPECT_THAT(cli.out, AllOf(HasSubstr("default"), HasSubstr("ready")));
}

// A watcher that stops reading holds at most limits.max_watch_queue transitions: the
// server drops its queue and ends its stream with RESOURCE_EXHAUSTED naming the bound,
// while a watcher that reads sees every transition. The slow client's receive window is
// small (no BDP probing) so the server's writes stall after a few events, as they would
// for a stalled client on a real network after its buffers fill.
TEST_F(RegistryTest, ASlowWatcherIsCutOffAtTheQueueBound) {
  const std::string dir = MakeTempDir();
  {
    std::ofstream(dir + "/ingotd.yaml") << "limits: {max_watch_queue: 8}\n";
  }
  server_.Start({"--threads", "2", "--config", dir + "/ingotd.yaml"});
  ASSERT_TRUE(server_.WaitServing(kStartTimeout)) << server_.ReadLog();
  grpc::ChannelArguments args;
  args.SetInt("grpc.http2.lookahead_bytes", 1024);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto slow_channel = grpc::CreateCustomChannel(server_.address(), grpc::InsecureChannelCredentials(), args);
  grpc::ClientContext slow_context;
  // Without a bound the watch never ends: the deadline turns that into a failure.
  slow_context.set_deadline(In(240));
  std::unique_ptr<grpc::ClientReader<v1::ModelEvent>> slow =
      v1::ModelService::NewStub(slow_channel)->WatchModels(&slow_context, v1::WatchModelsRequest());
  Watcher reader(server_.channel());
  // Load/unload cycles of a small checkpoint: four transitions each, each event with
  // its ModelInfo, far more bytes than the slow client's window and the server's
  // write buffer.
  constexpr int kCycles = 150;
  v1::LoadModelRequest tiny;
  tiny.set_name("tiny");
  tiny.set_source(SourcePath("tests/data/formats/hf-f32"));
  for (int i = 0; i < kCycles; ++i) {
    LoadResult r = Load(server_.channel(), tiny);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ASSERT_TRUE(Unload(server_.channel(), "tiny").ok());
  }
  ASSERT_TRUE(WaitFor([&] { return reader.Of("tiny").size() == 4u * kCycles; }))
      << reader.Of("tiny").size() << " of " << 4 * kCycles << " transitions seen by the reading watcher";
  // Now the slow client reads: what was written before the bound, then the status.
  v1::ModelEvent e;
  int read = 0;
  while (slow->Read(&e)) ++read;
  const grpc::Status status = slow->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("limits.max_watch_queue (8)"));
  EXPECT_LT(read, 4 * kCycles) << "the slow watcher got every event: it was never cut off";
  EXPECT_THAT(server_.ReadLog(), HasSubstr("watch_overflow max_watch_queue=8"));
  // The server goes on serving watchers.
  Watcher again(server_.channel());
  ASSERT_TRUE(Load(server_.channel(), tiny).status.ok());
  EXPECT_TRUE(WaitFor([&] { return again.Saw("tiny", v1::MODEL_STATE_READY); }));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ingot::testing
