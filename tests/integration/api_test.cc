// The gRPC API against the real ingotd: health, reflection, models, generation
// (deterministic greedy and seeded sampling, chat, tokenize), error codes, corrupt
// files, cancellation, concurrency and unloading under load.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "kernels/cpu/qmatrix.h"
#include "reflection.grpc.pb.h"
#include "tests/integration/integration_fixture.h"

namespace ingot::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(IngotdTest, HealthAndServerInfo) {
  EXPECT_EQ(Health(channel(), ""), HealthStatus::SERVING);
  EXPECT_EQ(Health(channel(), "default"), HealthStatus::SERVING);
  EXPECT_EQ(Health(channel(), "ingot.v1.GenerationService"), HealthStatus::SERVING);

  grpc::ClientContext context;
  v1::GetServerInfoResponse info;
  ASSERT_TRUE(models()->GetServerInfo(&context, {}, &info).ok());
  EXPECT_FALSE(info.version().empty());
  EXPECT_THAT(std::vector<std::string>(info.features().begin(), info.features().end()),
              ::testing::Contains("cpu"));
  // avx2 is listed exactly when the kernels picked their AVX2 paths on this CPU.
  const bool avx2 = std::string(kernels::LinearImplementation()) == "avx2";
  EXPECT_EQ(std::count(info.features().begin(), info.features().end(), "avx2"), avx2 ? 1 : 0);
  EXPECT_EQ(info.models_loaded(), 1);
  bool cpu = false;
  for (const v1::DeviceInfo& d : info.devices()) {
    if (d.name() != "cpu") continue;
    cpu = true;
    EXPECT_TRUE(d.available());
    EXPECT_GT(d.total_bytes(), 0);
    EXPECT_GT(d.used_bytes(), 0) << "the default model is resident on the cpu";
  }
  EXPECT_TRUE(cpu);
}

TEST_F(IngotdTest, ReflectionListsAndDescribesTheServices) {
  namespace refl = grpc::reflection::v1alpha;
  auto stub = refl::ServerReflection::NewStub(channel());
  grpc::ClientContext context;
  context.set_deadline(In(30));
  auto stream = stub->ServerReflectionInfo(&context);
  refl::ServerReflectionRequest list;
  list.set_list_services("*");
  refl::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Write(list));
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> services;
  for (const auto& s : response.list_services_response().service()) services.push_back(s.name());
  EXPECT_THAT(services, ::testing::IsSupersetOf({"ingot.v1.ModelService",
                                                 "ingot.v1.GenerationService",
                                                 "grpc.health.v1.Health"}));
  for (const char* symbol : {"ingot.v1.GenerationService", "ingot.v1.ModelInfo",
                             "grpc.health.v1.Health"}) {
    refl::ServerReflectionRequest describe;
    describe.set_file_containing_symbol(symbol);
    ASSERT_TRUE(stream->Write(describe));
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_GT(response.file_descriptor_response().file_descriptor_proto_size(), 0)
        << symbol << ": " << response.error_response().error_message();
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(IngotdTest, ListAndGetModel) {
  grpc::ClientContext list_context;
  v1::ListModelsResponse list;
  ASSERT_TRUE(models()->ListModels(&list_context, {}, &list).ok());
  ASSERT_EQ(list.models_size(), 1);
  const v1::ModelInfo& m = list.models(0);
  EXPECT_EQ(m.name(), "default");
  EXPECT_EQ(m.source(), DefaultModelPath());
  EXPECT_EQ(m.format(), "gguf");
  EXPECT_EQ(m.architecture(), "llama");
  EXPECT_EQ(m.device(), "cpu");
  EXPECT_EQ(m.state(), v1::MODEL_STATE_READY);
  EXPECT_GT(m.parameter_count(), 100'000'000);
  EXPECT_LT(m.parameter_count(), 200'000'000);
  EXPECT_GT(m.bytes_resident(), 50'000'000);
  EXPECT_GT(m.context_length(), 0);
  EXPECT_EQ(m.vocab_size(), 49152);
  EXPECT_EQ(m.layers(), 30);
  EXPECT_TRUE(m.has_chat_template());
  EXPECT_GT(m.tensor_kinds_size(), 0);

  grpc::ClientContext get_context;
  v1::GetModelRequest get;
  get.set_name("default");
  v1::GetModelResponse got;
  ASSERT_TRUE(models()->GetModel(&get_context, get, &got).ok());
  // The same description, but for the seconds it has been idle, which move.
  v1::ModelInfo listed = m;
  listed.clear_idle_seconds();
  got.mutable_model()->clear_idle_seconds();
  EXPECT_EQ(got.model().SerializeAsString(), listed.SerializeAsString());

  grpc::ClientContext missing_context;
  get.set_name("no-such-model");
  grpc::Status status = models()->GetModel(&missing_context, get, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no-such-model"));
}

TEST_F(IngotdTest, GreedyGenerationIsDeterministic) {
  v1::GenerateRequest request = Greedy("default", "The capital of France is", 16);
  Generation a = Generate(channel(), request);
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  Generation b = Generate(channel(), request);
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  EXPECT_FALSE(a.text.empty());
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_TRUE(IsFinal(a.last.finish_reason())) << a.last.DebugString();
  EXPECT_EQ(a.last.usage().completion_tokens(), static_cast<int>(a.ids.size()));
  EXPECT_GT(a.last.usage().prompt_tokens(), 0);
  EXPECT_EQ(a.last.usage().total_tokens(),
            a.last.usage().prompt_tokens() + a.last.usage().completion_tokens());
  if (a.last.finish_reason() == v1::FINISH_REASON_LENGTH) {
    EXPECT_EQ(a.ids.size(), 16u);
  }
  EXPECT_GT(a.last.timings().time_to_first_token_seconds(), 0);
  EXPECT_GT(a.last.timings().total_seconds(), 0);
  EXPECT_FALSE(a.last.request_id().empty());
}

TEST_F(IngotdTest, SeededSamplingIsReproducible) {
  v1::GenerateRequest request;
  request.set_model("default");
  request.set_prompt("Once upon a time");
  request.set_max_tokens(24);
  request.set_temperature(0.9f);
  request.set_top_p(0.95f);
  request.set_top_k(50);
  request.set_seed(1234);
  Generation a = Generate(channel(), request);
  Generation b = Generate(channel(), request);
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.text, b.text);
}

TEST_F(IngotdTest, ChatMessagesUseTheModelsTemplate) {
  v1::GenerateRequest request;
  request.set_model("default");
  auto* system = request.add_messages();
  system->set_role("system");
  system->set_content("You are a helpful assistant.");
  auto* user = request.add_messages();
  user->set_role("user");
  user->set_content("What is 2+2?");
  request.set_max_tokens(24);
  request.set_temperature(0);
  Generation g = Generate(channel(), request);
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_FALSE(g.text.empty());
  EXPECT_TRUE(IsFinal(g.last.finish_reason()));
  // The template adds the ChatML framing around both messages.
  EXPECT_GT(g.last.usage().prompt_tokens(), 15);
}

TEST_F(IngotdTest, TokenizeReturnsIdsAndPieces) {
  auto stub = v1::GenerationService::NewStub(channel());
  grpc::ClientContext context;
  v1::TokenizeRequest request;
  request.set_model("default");
  request.set_text("Hello world, héllo 世界!");
  v1::TokenizeResponse response;
  ASSERT_TRUE(stub->Tokenize(&context, request, &response).ok());
  ASSERT_GT(response.ids_size(), 3);
  ASSERT_EQ(response.ids_size(), response.pieces_size());
  std::string joined;
  for (const std::string& p : response.pieces()) joined += p;
  EXPECT_EQ(joined, request.text());
}

TEST_F(IngotdTest, UnknownModelIsNotFound) {
  Generation g = Generate(channel(), Greedy("no-such-model", "hi", 4));
  EXPECT_EQ(g.status.error_code(), grpc::StatusCode::NOT_FOUND) << g.status.error_message();
  EXPECT_THAT(g.status.error_message(), HasSubstr("no-such-model"));
  EXPECT_EQ(g.messages, 0);

  auto stub = v1::GenerationService::NewStub(channel());
  grpc::ClientContext context;
  v1::TokenizeRequest request;
  request.set_model("no-such-model");
  request.set_text("hi");
  v1::TokenizeResponse response;
  EXPECT_EQ(stub->Tokenize(&context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext unload_context;
  v1::UnloadModelRequest unload;
  unload.set_name("no-such-model");
  v1::UnloadModelResponse unloaded;
  EXPECT_EQ(models()->UnloadModel(&unload_context, unload, &unloaded).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(IngotdTest, LoadMissingFileIsNotFoundNamingThePath) {
  const std::string path = "/nonexistent/ingot/missing-model.gguf";
  LoadResult r = Load(channel(), "missing", path);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::NOT_FOUND) << r.status.error_message();
  EXPECT_THAT(r.status.error_message(), HasSubstr(path));
  EXPECT_EQ(Health(channel(), "missing"), HealthStatus::SERVICE_UNKNOWN);
}

TEST_F(IngotdTest, LoadBadRequestsAreRejected) {
  LoadResult dup = Load(channel(), "default", DefaultModelPath());
  EXPECT_EQ(dup.status.error_code(), grpc::StatusCode::ALREADY_EXISTS)
      << dup.status.error_message();
  LoadResult bad_name = Load(channel(), "bad name/with slash", DefaultModelPath());
  EXPECT_EQ(bad_name.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad_name.status.error_message(), HasSubstr("name"));
  LoadResult no_source = Load(channel(), "x", "");
  EXPECT_EQ(no_source.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(no_source.status.error_message(), HasSubstr("source"));
}

TEST_F(IngotdTest, CorruptFilesAreInvalidArgumentAndDefaultKeepsServing) {
  const std::string dir = MakeTempDir();
  const std::string model = ReadFile(DefaultModelPath());
  ASSERT_GT(model.size(), 4u << 20);
  struct Case { std::string name, bytes; };
  std::mt19937 rng(7);
  std::string garbage(1 << 16, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  // GGUF magic and version 3, then garbage counts and metadata.
  std::string bad_header = std::string("GGUF\x03\0\0\0", 8) + garbage;
  const std::vector<Case> cases = {
      {"truncated-metadata", model.substr(0, 4096)},
      {"truncated-tensor-data", model.substr(0, model.size() / 2)},
      {"garbage-after-magic", bad_header},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir + "/" + c.name + ".gguf";
    std::ofstream(path, std::ios::binary) << c.bytes;
    LoadResult r = Load(channel(), c.name, path);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << r.status.error_message();
    EXPECT_FALSE(r.status.error_message().empty());
    std::filesystem::remove(path);
    EXPECT_EQ(Health(channel(), c.name), HealthStatus::NOT_SERVING);
    ExpectFailedThenUnload(channel(), c.name, "INVALID_ARGUMENT");

    Generation g = Generate(channel(), Greedy("default", "Hello", 4));
    EXPECT_TRUE(g.status.ok()) << g.status.error_message();
    EXPECT_FALSE(g.ids.empty());
  }
  std::filesystem::remove_all(dir);
  grpc::ClientContext context;
  v1::ListModelsResponse list;
  ASSERT_TRUE(models()->ListModels(&context, {}, &list).ok());
  EXPECT_EQ(list.models_size(), 1) << list.DebugString();
}

TEST_F(IngotdTest, BadSamplingValuesAreInvalidArgumentNamingTheField) {
  struct Case {
    std::string field;
    std::function<void(v1::GenerateRequest*)> set;
  };
  const std::vector<Case> cases = {
      {"max_tokens", [](auto* r) { r->set_max_tokens(0); }},
      {"max_tokens", [](auto* r) { r->set_max_tokens(-5); }},
      {"temperature", [](auto* r) { r->set_temperature(-1); }},
      {"temperature", [](auto* r) { r->set_temperature(std::nanf("")); }},
      {"top_k", [](auto* r) { r->set_top_k(-1); }},
      {"top_p", [](auto* r) { r->set_top_p(0); }},
      {"top_p", [](auto* r) { r->set_top_p(1.5f); }},
      {"min_p", [](auto* r) { r->set_min_p(-0.1f); }},
      {"min_p", [](auto* r) { r->set_min_p(1.5f); }},
      {"repetition_penalty", [](auto* r) { r->set_repetition_penalty(0); }},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest request = Greedy("default", "Hello", 4);
    request.clear_temperature();
    c.set(&request);
    SCOPED_TRACE(request.ShortDebugString());
    Generation g = Generate(channel(), request);
    EXPECT_EQ(g.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(g.status.error_message(), HasSubstr(c.field));
    EXPECT_EQ(g.messages, 0);
  }
  // Neither or both of prompt and messages.
  v1::GenerateRequest neither = Greedy("default", "", 4);
  EXPECT_EQ(Generate(channel(), neither).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::GenerateRequest both = Greedy("default", "Hello", 4);
  both.add_messages()->set_role("user");
  EXPECT_EQ(Generate(channel(), both).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(IngotdTest, CancelMidStreamFreesTheRequest) {
  Generation g = Generate(channel(), Greedy("default", kCountingPrompt, 1000),
                          /*cancel_after_first=*/true);
  EXPECT_EQ(g.status.error_code(), grpc::StatusCode::CANCELLED) << g.status.error_message();
  EXPECT_GE(g.messages, 1);
  // The engine drops the request and the server records it as CANCELLED.
  std::string metrics;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    metrics = HttpGetMetrics(server_->metrics_port());
    if (MetricValue(metrics, R"(ingot_requests_running{model="default"})") == 0 &&
        MetricValue(metrics, R"(ingot_requests_total{code="CANCELLED",model="default"})") >= 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(MetricValue(metrics, R"(ingot_requests_running{model="default"})"), 0) << metrics;
  EXPECT_GE(MetricValue(metrics, R"(ingot_requests_total{code="CANCELLED",model="default"})"), 1)
      << metrics;
  // And the model serves the next request normally.
  Generation next = Generate(channel(), Greedy("default", "Hello", 4));
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
}

TEST_F(IngotdTest, EightConcurrentStreamsComplete) {
  constexpr int kStreams = 8;
  std::vector<Generation> results(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      v1::GenerateRequest r = Greedy("default", "Write a sentence about the number " +
                                     std::to_string(i) + ".", 24);
      if (i % 2) {  // mix greedy and seeded sampling in one batch
        r.set_temperature(0.7f);
        r.set_seed(i);
      }
      results[i] = Generate(channel(), r);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    EXPECT_TRUE(IsFinal(results[i].last.finish_reason())) << results[i].last.DebugString();
    EXPECT_GT(results[i].ids.size(), 0u);
    EXPECT_EQ(results[i].last.usage().completion_tokens(),
              static_cast<int>(results[i].ids.size()));
  }
}

TEST_F(IngotdTest, UnloadWhileStreamingLetsTheStreamFinish) {
  LoadResult load = Load(channel(), "second", DefaultModelPath());
  ASSERT_TRUE(load.status.ok()) << load.status.error_message();
  ASSERT_FALSE(load.messages.empty());
  const v1::LoadModelResponse& last = load.messages.back();
  EXPECT_EQ(last.model().name(), "second");
  EXPECT_EQ(last.model().state(), v1::MODEL_STATE_READY);
  EXPECT_DOUBLE_EQ(last.progress().fraction(), 1.0);
  for (const v1::LoadModelResponse& m : load.messages) {
    EXPECT_GE(m.progress().fraction(), 0.0);
    EXPECT_LE(m.progress().fraction(), 1.0);
  }
  EXPECT_EQ(Health(channel(), "second"), HealthStatus::SERVING);

  grpc::Status unload_status;
  Generation g = Generate(channel(), Greedy("second", kCountingPrompt, 48), false, [&] {
    grpc::ClientContext context;
    v1::UnloadModelRequest request;
    request.set_name("second");
    v1::UnloadModelResponse response;
    unload_status = models()->UnloadModel(&context, request, &response);
  });
  EXPECT_TRUE(unload_status.ok()) << unload_status.error_message();
  EXPECT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_TRUE(IsFinal(g.last.finish_reason())) << g.last.DebugString();
  EXPECT_GT(g.ids.size(), 1u);
  EXPECT_EQ(Health(channel(), "second"), HealthStatus::NOT_SERVING);

  Generation after = Generate(channel(), Greedy("second", "Hello", 4));
  EXPECT_EQ(after.status.error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext context;
  v1::ListModelsResponse list;
  ASSERT_TRUE(models()->ListModels(&context, {}, &list).ok());
  ASSERT_EQ(list.models_size(), 1);
  EXPECT_EQ(list.models(0).name(), "default");
}

}  // namespace
}  // namespace ingot::testing
