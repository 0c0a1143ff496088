// The ingot CLI and the /metrics endpoint against the real ingotd.
#include <algorithm>
#include <filesystem>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/integration/integration_fixture.h"

namespace ingot::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(IngotdTest, CliModelsGenerateTokenizeInfo) {
  const std::string server = server_->address();
  CommandResult models = RunCommand({Cli(), "--server", server, "models"});
  EXPECT_EQ(models.exit_code, 0) << models.err;
  EXPECT_THAT(models.out, HasSubstr("default"));
  EXPECT_THAT(models.out, HasSubstr("llama"));

  // The CLI streams the same greedy text the stub gets.
  Generation expected = Generate(channel(), Greedy("default", "The capital of France is", 8));
  ASSERT_TRUE(expected.status.ok());
  CommandResult gen = RunCommand({Cli(), "generate", "default", "The capital of France is",
                                  "-n", "8", "--greedy", "--server", server});
  EXPECT_EQ(gen.exit_code, 0) << gen.err;
  std::string out = gen.out;
  if (!out.empty() && out.back() == '\n' && expected.text.back() != '\n') out.pop_back();
  EXPECT_EQ(out, expected.text);

  // --json: one event per line, the last with finish reason and usage.
  CommandResult json = RunCommand({Cli(), "--server", server, "generate", "default", "Hello",
                                   "-n", "6", "--greedy", "--json"});
  EXPECT_EQ(json.exit_code, 0) << json.err;
  std::vector<std::string> lines = absl::StrSplit(json.out, '\n', absl::SkipEmpty());
  ASSERT_FALSE(lines.empty());
  nlohmann::json final_event = nlohmann::json::parse(lines.back());
  EXPECT_TRUE(final_event.contains("finish_reason")) << lines.back();
  EXPECT_TRUE(final_event.contains("usage")) << lines.back();

  // tokenize --ids matches the RPC.
  auto stub = v1::GenerationService::NewStub(channel());
  grpc::ClientContext context;
  v1::TokenizeRequest request;
  request.set_model("default");
  request.set_text("Hello world");
  v1::TokenizeResponse response;
  ASSERT_TRUE(stub->Tokenize(&context, request, &response).ok());
  CommandResult tok =
      RunCommand({Cli(), "--server", server, "tokenize", "default", "Hello world", "--ids"});
  EXPECT_EQ(tok.exit_code, 0) << tok.err;
  EXPECT_EQ(tok.out, absl::StrJoin(response.ids(), " ") + "\n");

  CommandResult info = RunCommand({Cli(), "--server", server, "info"});
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_THAT(info.out, HasSubstr("version"));
  CommandResult model_info = RunCommand({Cli(), "--server", server, "info", "default"});
  EXPECT_EQ(model_info.exit_code, 0) << model_info.err;
  EXPECT_THAT(model_info.out, HasSubstr("llama"));

  // chat keeps the conversation across lines and stops at /exit.
  CommandResult chat = RunCommand({Cli(), "--server", server, "chat", "default", "-n", "8",
                                   "--greedy", "--stats"},
                                  "Hi!\nAnd again?\n/exit\nnot sent\n");
  EXPECT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_FALSE(chat.out.empty());
  EXPECT_EQ(std::count(chat.err.begin(), chat.err.end(), '\n'), 2) << chat.err;

  // bench reports medians from the server's timings.
  CommandResult bench = RunCommand({Cli(), "--server", server, "bench", "default",
                                    "--prompt-tokens", "32", "--gen-tokens", "8", "--runs",
                                    "2", "--warmup", "0", "--json"});
  EXPECT_EQ(bench.exit_code, 0) << bench.err;
  nlohmann::json b = nlohmann::json::parse(bench.out, nullptr, false);
  ASSERT_FALSE(b.is_discarded()) << bench.out;
  EXPECT_EQ(b["prompt_tokens"], 32) << bench.out;
  EXPECT_GT(b["median_decode_tokens_per_second"].get<double>(), 0);
  EXPECT_GT(b["median_prefill_tokens_per_second"].get<double>(), 0);
  EXPECT_GT(b["median_time_to_first_token_seconds"].get<double>(), 0);
}

TEST_F(IngotdTest, CliErrorsExitNonZeroWithTheCodeName) {
  const std::string server = server_->address();
  CommandResult unknown = RunCommand({Cli(), "--server", server, "generate", "nope", "hi"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("NOT_FOUND"));
  CommandResult bad = RunCommand({Cli(), "--server", server, "generate", "default", "hi",
                                  "--temperature", "-2"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(bad.err, HasSubstr("temperature"));
  CommandResult missing = RunCommand({Cli(), "--server", server, "load", "m",
                                      "/nonexistent/x.gguf"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(missing.err, HasSubstr("/nonexistent/x.gguf"));
  CommandResult down = RunCommand({Cli(), "--server", "127.0.0.1:1", "models"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_THAT(down.err, HasSubstr("UNAVAILABLE"));
}

TEST_F(IngotdTest, MetricsHaveEveryNameAndPassPromtool) {
  Generation g = Generate(channel(), Greedy("default", "Hello", 8));
  ASSERT_TRUE(g.status.ok());
  const std::string metrics = HttpGetMetrics(server_->metrics_port());
  ASSERT_FALSE(metrics.empty());
  for (const char* name :
       {"ingot_requests_total", "ingot_request_duration_seconds",
        "ingot_time_to_first_token_seconds", "ingot_time_per_output_token_seconds",
        "ingot_prompt_tokens_total", "ingot_generated_tokens_total", "ingot_requests_running",
        "ingot_model_memory_bytes", "ingot_device_memory_used_bytes",
        "ingot_model_load_duration_seconds", "process_resident_memory_bytes",
        "process_cpu_seconds_total", "process_start_time_seconds"}) {
    EXPECT_THAT(metrics, HasSubstr(std::string("# TYPE ") + name + " ")) << name;
  }
  EXPECT_GE(MetricValue(metrics, R"(ingot_requests_total{code="OK",model="default"})"), 1);
  EXPECT_GE(MetricValue(metrics, R"(ingot_generated_tokens_total{model="default"})"),
            static_cast<double>(g.ids.size()));
  EXPECT_GT(MetricValue(metrics, R"(ingot_model_memory_bytes{device="cpu",kind="mlp",model="default"})"),
            0);
  EXPECT_GE(MetricValue(metrics, R"(ingot_model_memory_bytes{device="cpu",kind="kv_cache",model="default"})"),
            0);
  EXPECT_EQ(MetricValue(metrics, "ingot_quantizations_in_flight"), 0);
  EXPECT_GT(MetricValue(metrics, R"(ingot_device_memory_used_bytes{device="cpu"})"), 0);
  EXPECT_GT(MetricValue(metrics, "process_resident_memory_bytes"), 1e6);
  EXPECT_GE(MetricValue(metrics, R"(ingot_model_load_duration_seconds_count{device="cpu",model="default"})"), 1);

  if (!std::filesystem::exists("/usr/bin/promtool")) {
    GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  }
  CommandResult check = RunCommand({"/usr/bin/promtool", "check", "metrics"}, metrics);
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

}  // namespace
}  // namespace ingot::testing
