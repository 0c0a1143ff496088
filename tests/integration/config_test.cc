// ingotd's config file against the real server: --check-config, precedence of file,
// INGOT_* environment and flags, models loaded at start (quantized as configured),
// keep-alive of evictable models, the memory budget, and SIGTERM during 16 running
// streams plus a queued one with the per-model queue limit.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "tests/integration/integration_fixture.h"

namespace ingot::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(DefaultModelPath())) GTEST_SKIP() << "default model not fetched";
    dir_ = MakeTempDir();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
};

std::vector<v1::ModelInfo> ListModels(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::ClientContext context;
  context.set_deadline(In(30));
  v1::ListModelsResponse response;
  EXPECT_TRUE(v1::ModelService::NewStub(channel)->ListModels(&context, {}, &response).ok());
  return {response.models().begin(), response.models().end()};
}

const v1::ModelInfo* FindModel(const std::vector<v1::ModelInfo>& models, const std::string& name) {
  for (const v1::ModelInfo& m : models) {
    if (m.name() == name) return &m;
  }
  return nullptr;
}

TEST_F(ConfigTest, CheckConfigPrintsEveryProblemAndExitsOne) {
  const std::string bad = Write("bad.yaml",
                                "listen: 0.0.0.0:50051\n"
                                "threads: lots\n"
                                "limits: {max_tokns: 10}\n"
                                "log: {level: loud}\n"
                                "tls: {cert_file: /nonexistent/server.pem}\n"
                                "models:\n"
                                "  - {name: a, source: /nonexistent/a.gguf, keep_alive: 5m}\n");
  CommandResult r = RunCommand({INGOTD_PATH, "--check-config", bad});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  for (const char* expected :
       {"threads: expected an integer, got 'lots'", "limits.max_tokns: unknown key",
        "log.level: 'loud' is not one of", "tls.key_file: required when tls.cert_file is set",
        "models[0].keep_alive: a pinned model is never unloaded",
        "models[0].source: '/nonexistent/a.gguf' does not exist"}) {
    EXPECT_THAT(r.err, HasSubstr(expected));
  }
  EXPECT_THAT(r.err, HasSubstr("6 problems"));

  const std::string good = Write("good.yaml",
                                 "listen: 127.0.0.1:0\n"
                                 "model_roots: [" + fs::path(DefaultModelPath()).parent_path().string() +
                                 "]\nmodels:\n  - {name: smol, source: " + DefaultModelPath() +
                                 ", quantization: {method: hqq, bits: 4, group_size: 64}}\n");
  r = RunCommand({INGOTD_PATH, "--check-config", good});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("OK (listen 127.0.0.1:0, 1 model"));

  // Files the config names are read unless --syntax-only.
  const std::string files = Write("files.yaml",
                                  "tls: {cert_file: /nonexistent/s.pem, key_file: /nonexistent/s.key}\n"
                                  "auth: {tokens_file: /nonexistent/tokens}\n");
  r = RunCommand({INGOTD_PATH, "--check-config", files});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, AllOf(HasSubstr("tls.cert_file: cannot read '/nonexistent/s.pem'"),
                           HasSubstr("auth.tokens_file: cannot read '/nonexistent/tokens'")));
  r = RunCommand({INGOTD_PATH, "--check-config", files, "--syntax-only"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(ConfigTest, AnInvalidConfigStopsStartUpListingTheProblems) {
  const std::string path = Write("bad.yaml", "limits: {max_tokens: many}\nauth: {tokens_fil: x}\n");
  IngotdProcess server;
  server.Start({"--config", path});
  EXPECT_FALSE(server.WaitServing(std::chrono::seconds(30)));
  int status = server.StopWith(0, std::chrono::seconds(30));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_THAT(server.ReadLog(), AllOf(HasSubstr("limits.max_tokens: expected an integer"),
                                      HasSubstr("auth.tokens_fil: unknown key")));
}

// The file sets a listen address and max_tokens; the environment overrides
// max_tokens, the --listen flag (IngotdProcess passes one) overrides the address.
// Models come from the file: one pinned, one quantized at start, one evictable.
TEST_F(ConfigTest, FileEnvironmentAndFlagsAndTheModelsOfTheFile) {
  const std::string path = Write("ingotd.yaml",
                                 "listen: 127.0.0.1:1\n"
                                 "threads: 2\n"
                                 "limits: {max_tokens: 64}\n"
                                 "models:\n"
                                 "  - {name: default, source: " + DefaultModelPath() + "}\n"
                                 "  - {name: small, source: " + DefaultModelPath() +
                                 ", quantization: {method: hqq, bits: 4, group_size: 64}}\n"
                                 "  - {name: lazy, source: " + DefaultModelPath() +
                                 ", pinned: false, keep_alive: 3s}\n");
  setenv("INGOT_LIMITS_MAX_TOKENS", "16", 1);
  IngotdProcess server;
  server.Start({"--config", path});
  unsetenv("INGOT_LIMITS_MAX_TOKENS");
  ASSERT_TRUE(server.WaitServing(kStartTimeout)) << server.ReadLog();

  Generation over = Generate(server.channel(), Greedy("default", "Hello", 17));
  EXPECT_EQ(over.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(over.status.error_message(), HasSubstr("limits.max_tokens (16)"));
  Generation at_limit = Generate(server.channel(), Greedy("default", kCountingPrompt, 16));
  ASSERT_TRUE(at_limit.status.ok()) << at_limit.status.error_message();
  EXPECT_EQ(at_limit.last.usage().completion_tokens(), 16);

  std::vector<v1::ModelInfo> models = ListModels(server.channel());
  ASSERT_NE(FindModel(models, "default"), nullptr);
  ASSERT_NE(FindModel(models, "small"), nullptr);
  EXPECT_EQ(FindModel(models, "default")->quantization(), "");
  EXPECT_THAT(FindModel(models, "small")->quantization(), HasSubstr("hqq"));
  EXPECT_LT(FindModel(models, "small")->bytes_resident(), FindModel(models, "default")->bytes_resident() * 2);
  ASSERT_NE(FindModel(models, "lazy"), nullptr) << "the evictable model was not loaded at start";

  // A request uses it; idle keep_alive (3 s) after that it is unloaded (health says
  // so), not before (the keeper looks every 250 ms); pinned models stay.
  Generation use = Generate(server.channel(), Greedy("lazy", "The capital of France is", 8));
  ASSERT_TRUE(use.status.ok()) << use.status.error_message();
  const auto idle_from = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return FindModel(ListModels(server.channel()), "lazy") == nullptr; }))
      << server.ReadLog();
  EXPECT_GE(std::chrono::steady_clock::now() - idle_from, std::chrono::milliseconds(2500));
  EXPECT_NE(Health(server.channel(), "lazy"), HealthStatus::SERVING);
  EXPECT_NE(FindModel(ListModels(server.channel()), "default"), nullptr);
  EXPECT_NE(FindModel(ListModels(server.channel()), "small"), nullptr);
  EXPECT_THAT(server.ReadLog(), HasSubstr("evicted name=lazy device=cpu"));
  EXPECT_THAT(server.ReadLog(), HasSubstr("reason=idle_timeout"));

  // The next request loads it again and is served the same greedy text.
  Generation lazy = Generate(server.channel(), Greedy("lazy", "The capital of France is", 8));
  ASSERT_TRUE(lazy.status.ok()) << lazy.status.error_message();
  EXPECT_EQ(lazy.text, use.text);
  Generation pinned = Generate(server.channel(), Greedy("default", "The capital of France is", 8));
  EXPECT_EQ(lazy.text, pinned.text);
  EXPECT_EQ(Health(server.channel(), "lazy"), HealthStatus::SERVING);
  EXPECT_THAT(server.ReadLog(), HasSubstr("keep_alive: loading name=lazy again"));
}

// devices.cpu.memory_budget_bytes reaches the engine: a start-up load that does not
// fit the budget (the admission rule counts loads too, issue 17) ends start-up with
// RESOURCE_EXHAUSTED naming the model.
TEST_F(ConfigTest, TheMemoryBudgetOfTheConfigBindsLoadsAtStart) {
  const std::string path = Write("ingotd.yaml",
                                 "devices: {cpu: {memory_budget_bytes: 1000000}}\n"
                                 "models:\n"
                                 "  - {name: small, source: " + DefaultModelPath() +
                                 ", quantization: {method: hqq, bits: 4}}\n");
  IngotdProcess server;
  server.Start({"--config", path});
  EXPECT_FALSE(server.WaitServing(std::chrono::seconds(120)));
  int status = server.StopWith(0, std::chrono::seconds(60));
  ASSERT_TRUE(WIFEXITED(status)) << server.ReadLog();
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_THAT(server.ReadLog(), AllOf(HasSubstr("RESOURCE_EXHAUSTED"),
                                      HasSubstr("models[0] (small"),
                                      HasSubstr("memory budget")));
}

// SIGTERM while 16 streams run (a full batch) and one more waits in the queue, with
// limits.max_queue_per_model 1 refusing the one after: every stream ends with a clean
// status within drain_seconds, none is lost, the process exits 0.
TEST_F(ConfigTest, SigtermDuring16RunningStreamsLosesNone) {
  const std::string path = Write("ingotd.yaml",
                                 "threads: 2\ndrain_seconds: 120\n"
                                 "limits: {max_queue_per_model: 1, max_concurrent_streams: 0}\n"
                                 "models:\n  - {name: default, source: " + DefaultModelPath() + "}\n");
  IngotdProcess server;
  server.Start({"--config", path});
  ASSERT_TRUE(server.WaitServing(kStartTimeout)) << server.ReadLog();

  constexpr int kRunning = 16;
  constexpr int kStreams = kRunning + 1;  // one queued behind the full batch
  std::atomic<int> started{0};
  std::vector<Generation> results(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRunning; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Generate(server.channel(), Greedy("default", kCountingPrompt, 64), false,
                            [&] { started++; });
    });
  }
  auto held = [&] {
    return MetricValue(HttpGetMetrics(server.metrics_port()),
                       R"(ingot_requests_running{model="default"})");
  };
  bool ok = WaitFor([&] { return started == kRunning; });
  if (ok) {
    threads.emplace_back([&] {
      results[kRunning] = Generate(server.channel(), Greedy("default", kCountingPrompt, 64));
    });
    ok = WaitFor([&] { return held() == kStreams; });
  }
  if (!ok) {
    server.StopWith(SIGKILL, std::chrono::seconds(10));
    for (std::thread& t : threads) t.join();
    FAIL() << "the streams did not start; log:\n" << server.ReadLog();
  }
  // The queue holds one: the next is refused naming the limit.
  Generation refused = Generate(server.channel(), Greedy("default", "Hello", 4));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.status.error_message();
  EXPECT_THAT(refused.status.error_message(), HasSubstr("limits.max_queue_per_model (1)"));

  const auto sent = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(server.pid(), SIGTERM), 0);
  EXPECT_TRUE(WaitFor([&] { return Health(server.channel(), "") != HealthStatus::SERVING; }));
  Generation late = Generate(server.channel(), Greedy("default", "Hello", 4));
  EXPECT_FALSE(late.status.ok()) << "a call after SIGTERM was served";
  for (std::thread& t : threads) t.join();
  int finished = 0;
  for (int i = 0; i < kStreams; ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    if (results[i].status.ok() && IsFinal(results[i].last.finish_reason())) ++finished;
  }
  EXPECT_EQ(finished, kStreams);
  int status = server.StopWith(0, std::chrono::seconds(150));
  ASSERT_NE(status, -1) << "ingotd did not exit; log:\n" << server.ReadLog();
  EXPECT_LT(std::chrono::steady_clock::now() - sent, std::chrono::seconds(125));
  ASSERT_TRUE(WIFEXITED(status)) << server.ReadLog();
  EXPECT_EQ(WEXITSTATUS(status), 0) << server.ReadLog();
  EXPECT_THAT(server.ReadLog(), HasSubstr("draining for up to 120s"));
}

// Models addressed by Hugging Face repository id, resolved offline in a cache that
// huggingface_hub laid out (tests/reference/gen_hf_cache.py: refs/, snapshots/ linking
// into blobs/), with the model roots still holding: the config's model loads at `main`,
// LoadModel picks a tag (whose config.json differs), and what is not there is NOT_FOUND
// naming where it looked.
TEST_F(ConfigTest, HuggingFaceCacheByRepositoryIdAndRevision) {
  const std::string data = std::string(INGOT_SOURCE_DIR) + "/tests/data";
  const std::string path = Write("hub.yaml",
                                 "threads: 2\n"
                                 "model_roots: [" + data + "]\n"
                                 "hf_cache: " + data + "/hf_cache/hub\n"
                                 "models:\n"
                                 "  - {name: cached, source: ingot-test/tiny-llama}\n");
  CommandResult check = RunCommand({INGOTD_PATH, "--check-config", path});
  EXPECT_EQ(check.exit_code, 0) << check.err;
  IngotdProcess server;
  server.Start({"--config", path});
  ASSERT_TRUE(server.WaitServing(kStartTimeout)) << server.ReadLog();

  v1::LoadModelRequest tag;
  tag.set_name("tagged");
  tag.set_source("ingot-test/tiny-llama");
  tag.set_revision("v1");
  LoadResult r = Load(server.channel(), tag);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  r = Load(server.channel(), "plain", data + "/formats/hf-f32");
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  std::map<std::string, v1::ModelInfo> by_name;
  for (const v1::ModelInfo& m : ListModels(server.channel())) by_name[m.name()] = m;
  ASSERT_EQ(by_name.size(), 3u);
  EXPECT_EQ(by_name["cached"].context_length(), 256);  // max_position_embeddings at main
  EXPECT_EQ(by_name["tagged"].context_length(), 128);  // and at tag v1
  EXPECT_THAT(by_name["cached"].source(), HasSubstr("models--ingot-test--tiny-llama/snapshots/"));
  // The same weights as the directory they were downloaded from.
  const Generation a = Generate(server.channel(), Greedy("cached", "The cat sat on", 8));
  const Generation b = Generate(server.channel(), Greedy("plain", "The cat sat on", 8));
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  EXPECT_EQ(a.ids, b.ids);

  v1::LoadModelRequest missing;
  missing.set_name("missing");
  missing.set_source("ingot-test/not-there");
  r = Load(server.channel(), missing);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(r.status.error_message(), HasSubstr("models--ingot-test--not-there"));
  missing.set_source("ingot-test/tiny-llama");
  missing.set_revision("v9");
  r = Load(server.channel(), missing);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(r.status.error_message(), HasSubstr("refs/v9"));
  missing.set_revision("../../etc");
  r = Load(server.channel(), missing);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ListModels(server.channel()).size(), 3u);
}

}  // namespace
}  // namespace ingot::testing
