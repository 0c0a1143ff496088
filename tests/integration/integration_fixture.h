// Shared pieces of the integration tests: call helpers for the generated stubs and
// the IngotdTest fixture, whose one ingotd (the default model preloaded as "default")
// serves every IngotdTest in the binary. Tests skip when the default model has not
// been fetched (scripts/fetch_model.sh).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "ingot/v1/generation.grpc.pb.h"
#include "ingot/v1/model.grpc.pb.h"
#include "tests/integration/ingotd_process.h"
#include "tests/test_util.h"

namespace ingot::testing {

using HealthStatus = grpc::health::v1::HealthCheckResponse;

inline constexpr auto kStartTimeout = std::chrono::seconds(180);
// A prompt whose greedy continuation keeps going (no early EOS): long streams.
inline constexpr char kCountingPrompt[] = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,";

// `seconds` from now, as a gRPC deadline.
std::chrono::system_clock::time_point In(int seconds);
// Polls `done` every 10 ms for up to two minutes.
bool WaitFor(const std::function<bool()>& done);

struct Generation {
  grpc::Status status;
  std::string text;
  std::vector<int32_t> ids;
  int messages = 0;
  v1::GenerateResponse last;
};

// Runs one Generate call to the end. `on_first` runs when the first message arrives;
// with `cancel_after_first` the call is then cancelled.
Generation Generate(const std::shared_ptr<grpc::Channel>& channel,
                    const v1::GenerateRequest& request, bool cancel_after_first = false,
                    std::function<void()> on_first = nullptr);
v1::GenerateRequest Greedy(const std::string& model, const std::string& prompt,
                           int max_tokens);
// The service's status, or SERVICE_UNKNOWN when the call fails.
HealthStatus::ServingStatus Health(const std::shared_ptr<grpc::Channel>& channel,
                                   const std::string& service);

struct LoadResult {
  grpc::Status status;
  std::vector<v1::LoadModelResponse> messages;
};
LoadResult Load(const std::shared_ptr<grpc::Channel>& channel, const std::string& name,
                const std::string& source);
// Any LoadModel request, with a deadline of `deadline_s` seconds.
LoadResult Load(const std::shared_ptr<grpc::Channel>& channel, const v1::LoadModelRequest& request,
                int deadline_s = 300);
grpc::Status Unload(const std::shared_ptr<grpc::Channel>& channel, const std::string& name);
// A load that failed after its name was taken stays listed as FAILED with its error
// (issue 17): checks that `name` is so, with `code` ("INVALID_ARGUMENT") in its error
// and no bytes held, then unloads it, as each test leaves the shared server.
void ExpectFailedThenUnload(const std::shared_ptr<grpc::Channel>& channel, const std::string& name,
                            const std::string& code);
// Names of the loaded models (empty when the call fails).
std::vector<std::string> ModelNames(const std::shared_ptr<grpc::Channel>& channel);

// LENGTH, STOP or EOS: a stream that ended normally.
bool IsFinal(v1::FinishReason r);

// One server for the suite; each test leaves it with only "default" loaded.
class IngotdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;
  void TearDown() override;

  std::shared_ptr<grpc::Channel> channel() { return server_->channel(); }
  std::unique_ptr<v1::ModelService::Stub> models() { return v1::ModelService::NewStub(channel()); }
  std::string Cli() { return INGOT_CLI_PATH; }

  static IngotdProcess* server_;
  static bool started_;
};

}  // namespace ingot::testing
