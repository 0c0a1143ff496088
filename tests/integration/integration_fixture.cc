#include "tests/integration/integration_fixture.h"

#include <filesystem>
#include <iostream>
#include <thread>

namespace ingot::testing {

std::chrono::system_clock::time_point In(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

bool WaitFor(const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

Generation Generate(const std::shared_ptr<grpc::Channel>& channel,
                    const v1::GenerateRequest& request, bool cancel_after_first,
                    std::function<void()> on_first) {
  auto stub = v1::GenerationService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(300));
  auto reader = stub->Generate(&context, request);
  Generation g;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (g.messages++ == 0) {
      if (on_first) on_first();
      if (cancel_after_first) context.TryCancel();
    }
    g.text += response.text();
    g.ids.insert(g.ids.end(), response.token_ids().begin(), response.token_ids().end());
    g.last = response;
  }
  g.status = reader->Finish();
  return g;
}

v1::GenerateRequest Greedy(const std::string& model, const std::string& prompt, int max_tokens) {
  v1::GenerateRequest r;
  r.set_model(model);
  r.set_prompt(prompt);
  r.set_max_tokens(max_tokens);
  r.set_temperature(0);
  return r;
}

HealthStatus::ServingStatus Health(const std::shared_ptr<grpc::Channel>& channel,
                                   const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(10));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthStatus response;
  grpc::Status status = stub->Check(&context, request, &response);
  return status.ok() ? response.status() : HealthStatus::SERVICE_UNKNOWN;
}

LoadResult Load(const std::shared_ptr<grpc::Channel>& channel, const std::string& name,
                const std::string& source) {
  v1::LoadModelRequest request;
  request.set_name(name);
  request.set_source(source);
  return Load(channel, request);
}

LoadResult Load(const std::shared_ptr<grpc::Channel>& channel, const v1::LoadModelRequest& request,
                int deadline_s) {
  auto stub = v1::ModelService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(deadline_s));
  auto reader = stub->LoadModel(&context, request);
  LoadResult result;
  v1::LoadModelResponse response;
  while (reader->Read(&response)) result.messages.push_back(response);
  result.status = reader->Finish();
  return result;
}

grpc::Status Unload(const std::shared_ptr<grpc::Channel>& channel, const std::string& name) {
  auto stub = v1::ModelService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(30));
  v1::UnloadModelRequest request;
  request.set_name(name);
  v1::UnloadModelResponse response;
  return stub->UnloadModel(&context, request, &response);
}

void ExpectFailedThenUnload(const std::shared_ptr<grpc::Channel>& channel, const std::string& name,
                            const std::string& code) {
  auto stub = v1::ModelService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(30));
  v1::GetModelRequest request;
  request.set_name(name);
  v1::GetModelResponse response;
  const grpc::Status status = stub->GetModel(&context, request, &response);
  EXPECT_TRUE(status.ok()) << name << ": " << status.error_message();
  EXPECT_EQ(response.model().state(), v1::MODEL_STATE_FAILED) << name;
  EXPECT_THAT(response.model().error(), ::testing::HasSubstr(code)) << name;
  EXPECT_EQ(response.model().bytes_resident(), 0) << name;
  EXPECT_TRUE(Unload(channel, name).ok()) << name;
}

std::vector<std::string> ModelNames(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::ModelService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(30));
  v1::ListModelsResponse response;
  std::vector<std::string> names;
  if (!stub->ListModels(&context, v1::ListModelsRequest(), &response).ok()) return names;
  for (const auto& m : response.models()) names.push_back(m.name());
  return names;
}

bool IsFinal(v1::FinishReason r) {
  return r == v1::FINISH_REASON_LENGTH || r == v1::FINISH_REASON_STOP ||
         r == v1::FINISH_REASON_EOS;
}

IngotdProcess* IngotdTest::server_ = nullptr;
bool IngotdTest::started_ = false;

void IngotdTest::SetUpTestSuite() {
  if (!std::filesystem::exists(DefaultModelPath())) return;
  server_ = new IngotdProcess();
  server_->Start({"--model", "default=" + DefaultModelPath(), "--threads", "2"});
  started_ = server_->WaitServing(kStartTimeout);
}

void IngotdTest::TearDownTestSuite() {
  delete server_;
  server_ = nullptr;
}

void IngotdTest::SetUp() {
  if (!std::filesystem::exists(DefaultModelPath())) {
    GTEST_SKIP() << "default model not fetched: " << DefaultModelPath()
                 << " (run scripts/fetch_model.sh)";
  }
  ASSERT_TRUE(started_) << "ingotd did not become SERVING; its log:\n" << server_->ReadLog();
}

void IngotdTest::TearDown() {
  if (HasFailure() && server_) std::cerr << "ingotd log:\n" << server_->ReadLog();
}

}  // namespace ingot::testing
