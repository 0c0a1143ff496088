// ingotd start-up and shutdown: each test runs a server of its own and stops it.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "tests/integration/integration_fixture.h"

namespace ingot::testing {
namespace {

using ::testing::HasSubstr;

// Servers of their own: these stop them.
class IngotdLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(DefaultModelPath())) {
      GTEST_SKIP() << "default model not fetched: " << DefaultModelPath();
    }
  }
};

TEST_F(IngotdLifecycleTest, FailingPreloadExitsNonZeroWithTheReason) {
  IngotdProcess server;
  server.Start({"--model", "x=/nonexistent/model.gguf"});
  EXPECT_FALSE(server.WaitServing(std::chrono::seconds(60)));
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!server.Exited(&status) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_THAT(server.ReadLog(), HasSubstr("/nonexistent/model.gguf"));
  EXPECT_THAT(server.ReadLog(), HasSubstr("NOT_FOUND"));
}

// SIGTERM with streams running: within --drain-seconds they all complete normally,
// new calls are refused, and the process exits 0.
TEST_F(IngotdLifecycleTest, SigtermLetsRunningStreamsFinishAndExitsZero) {
  IngotdProcess server;
  server.Start({"--model", "default=" + DefaultModelPath(), "--drain-seconds", "60"});
  ASSERT_TRUE(server.WaitServing(kStartTimeout)) << server.ReadLog();
  constexpr int kStreams = 3;
  std::atomic<int> started{0};
  std::vector<Generation> results(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Generate(server.channel(), Greedy("default", kCountingPrompt, 48), false,
                            [&] { started++; });
    });
  }
  if (!WaitFor([&] { return started == kStreams; })) {
    server.StopWith(SIGKILL, std::chrono::seconds(10));
    for (std::thread& t : threads) t.join();
    FAIL() << "streams did not start; log:\n" << server.ReadLog();
  }
  kill(server.pid(), SIGTERM);
  // Health flips first, then the server stops taking calls.
  EXPECT_TRUE(WaitFor([&] { return Health(server.channel(), "") != HealthStatus::SERVING; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Generation late = Generate(server.channel(), Greedy("default", "Hello", 4));
  EXPECT_FALSE(late.status.ok()) << "a call after SIGTERM was served";
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    EXPECT_TRUE(IsFinal(results[i].last.finish_reason())) << results[i].last.DebugString();
  }
  int status = server.StopWith(0, std::chrono::seconds(60));  // signal 0: just wait
  ASSERT_NE(status, -1) << "ingotd did not exit; log:\n" << server.ReadLog();
  ASSERT_TRUE(WIFEXITED(status)) << server.ReadLog();
  EXPECT_EQ(WEXITSTATUS(status), 0) << server.ReadLog();
  EXPECT_THAT(server.ReadLog(), HasSubstr("SIGTERM"));
}

// Streams longer than the drain window are cancelled at its end; still exit 0.
TEST_F(IngotdLifecycleTest, DrainDeadlineCancelsLongStreamsAndExitsZero) {
  IngotdProcess server;
  server.Start({"--model", "default=" + DefaultModelPath(), "--drain-seconds", "1"});
  ASSERT_TRUE(server.WaitServing(kStartTimeout)) << server.ReadLog();
  std::atomic<int> started{0};
  Generation result;
  std::thread t([&] {
    result = Generate(server.channel(), Greedy("default", kCountingPrompt, 2000), false,
                      [&] { started++; });
  });
  if (!WaitFor([&] { return started == 1; })) {
    server.StopWith(SIGKILL, std::chrono::seconds(10));
    t.join();
    FAIL() << "the stream did not start: " << result.status.error_message();
  }
  auto sent = std::chrono::steady_clock::now();
  int status = server.StopWith(SIGINT, std::chrono::seconds(60));
  t.join();
  ASSERT_NE(status, -1) << "ingotd did not exit; log:\n" << server.ReadLog();
  EXPECT_LT(std::chrono::steady_clock::now() - sent, std::chrono::seconds(30));
  ASSERT_TRUE(WIFEXITED(status)) << server.ReadLog();
  EXPECT_EQ(WEXITSTATUS(status), 0) << server.ReadLog();
  // Either an error status or a final message saying it was cancelled.
  EXPECT_TRUE(!result.status.ok() ||
              result.last.finish_reason() == v1::FINISH_REASON_CANCELLED)
      << result.last.DebugString();
}

}  // namespace
}  // namespace ingot::testing
