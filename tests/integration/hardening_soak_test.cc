// Issue 13's soak: for kSoakSeconds, concurrent streams (some cancelled), loads and
// unloads (some while their streams run), quantizations (some cancelled) and
// cancelled evaluations, interleaved on one ingotd. Then: every gauge back to its idle
// value, the process's RSS within kRssMargin of where it was after a warm-up round,
// and SIGTERM with a stream running ends within the drain time, exit status 0.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include "ingot/v1/quantization.grpc.pb.h"
#include "tests/integration/integration_fixture.h"

namespace ingot::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kSoakSeconds = 90;
constexpr double kDrainSeconds = 5;
// What may stay behind: allocator arenas of the gRPC and worker threads and page-cache
// pages of the mapped model counted in RSS. A leaked quantized copy of the model
// (~90 MB) or a leaked KV cache per stream would not fit.
constexpr double kRssMargin = 48 << 20;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

grpc::Status Quantize(const std::shared_ptr<grpc::Channel>& channel, const std::string& target,
                      int deadline_s) {
  auto stub = v1::QuantizationService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(deadline_s));
  v1::QuantizeModelRequest request;
  request.set_source("default");
  request.set_target(target);
  request.mutable_config()->set_method("hqq");
  request.mutable_config()->set_bits(4);
  auto reader = stub->QuantizeModel(&context, request);
  v1::QuantizeModelResponse response;
  while (reader->Read(&response)) {
  }
  return reader->Finish();
}

grpc::Status CancelledEvaluation(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::QuantizationService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(2));
  v1::EvaluateModelRequest request;
  request.set_model("default");
  v1::EvaluateModelResponse response;
  return stub->EvaluateModel(&context, request, &response);
}

// Sum of every sample of `family` (all label sets), 0 when there is none.
double SumOf(const std::string& exposition, const std::string& family) {
  double sum = 0;
  size_t at = 0;
  while ((at = exposition.find("\n" + family, at)) != std::string::npos) {
    ++at;
    const size_t end = exposition.find('\n', at);
    const std::string line = exposition.substr(at, end - at);
    const char next = line.size() > family.size() ? line[family.size()] : ' ';
    if (next == '{' || next == ' ') sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

TEST(HardeningSoakTest, Hardening13_Soak_GaugesRssAndDrainAfterInterleavedWork) {
  if (!fs::exists(DefaultModelPath())) GTEST_SKIP() << "default model not fetched";
  IngotdProcess server;
  server.Start({"--model", "default=" + DefaultModelPath(), "--threads", "2", "--drain-seconds",
                std::to_string(kDrainSeconds)});
  ASSERT_TRUE(server.WaitServing(kStartTimeout)) << server.ReadLog();
  auto channel = server.channel();
  const std::string model_path = DefaultModelPath();
  auto metrics = [&] { return HttpGetMetrics(server.metrics_port()); };
  const std::string used = R"(ingot_device_memory_used_bytes{device="cpu"})";

  // Warm-up: one of each kind of work, so allocator arenas and thread stacks exist.
  ASSERT_TRUE(Generate(channel, Greedy("default", kCountingPrompt, 8)).status.ok());
  ASSERT_TRUE(Load(channel, "soak-m", model_path).status.ok());
  ASSERT_TRUE(Unload(channel, "soak-m").ok());
  const grpc::Status warm = Quantize(channel, "soak-q", 300);
  ASSERT_TRUE(warm.ok()) << warm.error_code() << " " << warm.error_message();
  ASSERT_TRUE(Unload(channel, "soak-q").ok());
  ASSERT_TRUE(WaitFor([&] { return ModelNames(channel).size() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::string idle = metrics();
  const double used_idle = MetricValue(idle, used);
  const double rss_start = MetricValue(idle, "process_resident_memory_bytes");

  std::atomic<bool> stop{false};
  std::atomic<int> streams{0}, cancelled{0}, loads{0}, quantizations{0}, evaluations{0}, errors{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 3; ++w) {  // streams, every third cancelled after its first token
    workers.emplace_back([&, w] {
      std::mt19937 rng(w);
      for (int i = 0; !stop; ++i) {
        const bool cancel = i % 3 == 2;
        Generation g = Generate(channel, Greedy("default", kCountingPrompt, 8 + rng() % 32), cancel);
        ++streams;
        if (cancel) ++cancelled;
        if (!g.status.ok() && g.status.error_code() != grpc::StatusCode::CANCELLED &&
            g.status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) {
          ++errors;
          ADD_FAILURE() << "stream: " << g.status.error_code() << " " << g.status.error_message();
        }
      }
    });
  }
  workers.emplace_back([&] {  // load, stream on it, unload while the stream runs
    for (int i = 0; !stop; ++i) {
      const std::string name = "soak-m" + std::to_string(i);
      LoadResult l = Load(channel, name, model_path);
      if (!l.status.ok()) {
        ++errors;
        ADD_FAILURE() << "load: " << l.status.error_message();
        continue;
      }
      ++loads;
      Generation g = Generate(channel, Greedy(name, kCountingPrompt, 24), false,
                              [&] { EXPECT_TRUE(Unload(channel, name).ok()); });
      EXPECT_TRUE(g.status.ok()) << g.status.error_message();
    }
  });
  workers.emplace_back([&] {  // quantize (every other one cancelled by its deadline), unload
    for (int i = 0; !stop; ++i) {
      const std::string name = "soak-q" + std::to_string(i);
      grpc::Status s = Quantize(channel, name, i % 2 == 1 ? 2 : 300);
      ++quantizations;
      if (s.ok()) {
        EXPECT_TRUE(Unload(channel, name).ok());
      } else if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
        // The deadline may pass between the server's last cancel check and its answer.
        (void)Unload(channel, name);
      } else {
        ++errors;
        ADD_FAILURE() << "quantize: " << s.error_code() << " " << s.error_message();
      }
      ++evaluations;
      EXPECT_EQ(CancelledEvaluation(channel).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    }
  });
  const auto start = Clock::now();
  while (SecondsSince(start) < kSoakSeconds && errors == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  stop = true;
  for (std::thread& t : workers) t.join();

  // Idle again: only "default", nothing running or quantizing, its memory alone.
  std::string end;
  const bool settled = WaitFor([&] {
    end = metrics();
    return ModelNames(channel) == std::vector<std::string>{"default"} &&
           SumOf(end, "ingot_requests_running") == 0 &&
           MetricValue(end, "ingot_quantizations_in_flight") == 0 &&
           MetricValue(end, used) == used_idle;
  });
  EXPECT_TRUE(settled) << end;
  // A cancelled evaluation may finish its last batch of 64 tokens after its call
  // ended: measure once the process is idle.
  double cpu = MetricValue(end, "process_cpu_seconds_total");
  for (int i = 0; i < 30; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    end = metrics();
    const double now = MetricValue(end, "process_cpu_seconds_total");
    if (now - cpu < 0.05) break;
    cpu = now;
  }
  const double rss_end = MetricValue(end, "process_resident_memory_bytes");
  std::cout << "[ measured ] soak " << kSoakSeconds << " s: " << streams << " streams (" << cancelled
            << " cancelled), " << loads << " loads/unloads, " << quantizations << " quantizations, "
            << evaluations << " cancelled evaluations; RSS " << rss_start / (1 << 20) << " MiB -> "
            << rss_end / (1 << 20) << " MiB\n";
  EXPECT_LT(rss_end, rss_start + kRssMargin);

  // The drain with a stream running: its final message, then exit 0 in time.
  Clock::time_point term{};
  int exit_status = -1;
  std::thread stopper;
  Generation g = Generate(channel, Greedy("default", kCountingPrompt, 4000), false, [&] {
    stopper = std::thread([&] {
      term = Clock::now();
      exit_status = server.StopWith(SIGTERM, std::chrono::seconds(60));
    });
  });
  stopper.join();
  const double exit_s = SecondsSince(term);
  EXPECT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.last.finish_reason(), v1::FINISH_REASON_CANCELLED);
  ASSERT_TRUE(WIFEXITED(exit_status));
  EXPECT_EQ(WEXITSTATUS(exit_status), 0);
  EXPECT_LT(exit_s, kDrainSeconds);
  std::cout << "[ measured ] SIGTERM to exit " << exit_s << " s (drain " << kDrainSeconds << " s)\n";
  if (HasFailure()) std::cerr << "ingotd log:\n" << server.ReadLog();
}

}  // namespace
}  // namespace ingot::testing
