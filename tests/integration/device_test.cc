// Devices and backends over gRPC and the CLI: a load names where the model runs and
// through which backend row; devices this build or machine cannot serve are refused
// with the reason, and the server keeps serving what it has.
#include <filesystem>
#include <fstream>

#include "nlohmann/json.hpp"

#include "tests/integration/integration_fixture.h"

namespace ingot::testing {
namespace {

using ::testing::HasSubstr;

// The default model loaded as `name` on `device` through `backend`.
grpc::Status LoadOn(const std::shared_ptr<grpc::Channel>& channel, const std::string& name, const std::string& device,
                    const std::string& backend, v1::ModelInfo* info = nullptr) {
  v1::LoadModelRequest request;
  request.set_name(name);
  request.set_source(DefaultModelPath());
  request.set_device(device);
  request.set_backend(backend);
  LoadResult r = Load(channel, request);
  for (const v1::LoadModelResponse& m : r.messages) {
    if (m.has_model() && info != nullptr) *info = m.model();
  }
  return r.status;
}

bool HasGpu() { return std::filesystem::exists("/dev/nvidia0"); }

TEST_F(IngotdTest, UnavailableAndUnknownDevicesAreRefusedWithTheReason) {
  if (!HasGpu()) {
    grpc::Status cuda = LoadOn(channel(), "on-gpu", "cuda:0", "");
    EXPECT_EQ(cuda.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << cuda.error_message();
    EXPECT_THAT(cuda.error_message(), HasSubstr("cuda:0"));
    // Either this binary has no CUDA, or it has and the machine has no GPU: say which.
    EXPECT_TRUE(cuda.error_message().find("built without CUDA") != std::string::npos ||
                cuda.error_message().find("no CUDA device is visible") != std::string::npos)
        << cuda.error_message();
  }
  grpc::Status mps = LoadOn(channel(), "on-mps", "mps", "");
  EXPECT_EQ(mps.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << mps.error_message();
  EXPECT_THAT(mps.error_message(), HasSubstr("mps"));
  EXPECT_THAT(mps.error_message(), HasSubstr("not part of this Linux build"));
  grpc::Status mlx = LoadOn(channel(), "on-mlx", "mlx", "");
  EXPECT_EQ(mlx.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << mlx.error_message();
  for (const char* bad : {"tpu:0", "cuda:x", "gpu", "CPU"}) {
    grpc::Status s = LoadOn(channel(), "bad-device", bad, "");
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(bad));
  }
  grpc::Status backend = LoadOn(channel(), "bad-backend", "cpu", "tensorrt");
  EXPECT_EQ(backend.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << backend.error_message();
  EXPECT_THAT(backend.error_message(), HasSubstr("tensorrt"));
  grpc::Status native_gpu = LoadOn(channel(), "native-gpu", "cuda:0", "native");
  EXPECT_EQ(native_gpu.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << native_gpu.error_message();
  EXPECT_THAT(native_gpu.error_message(), HasSubstr("native runs on cpu only"));

  // The CLI says the same and exits non-zero; nothing was registered and the server
  // still serves its model.
  if (!HasGpu()) {
    CommandResult cli = RunCommand({Cli(), "--server", server_->address(), "load", "on-gpu", DefaultModelPath(),
                                    "--device", "cuda:0"});
    EXPECT_NE(cli.exit_code, 0);
    EXPECT_THAT(cli.err, HasSubstr("FAILED_PRECONDITION"));
    EXPECT_THAT(cli.err, HasSubstr("cuda:0"));
  }
  CommandResult cli_mps = RunCommand({Cli(), "--server", server_->address(), "load", "on-mps", DefaultModelPath(),
                                      "--device", "mps"});
  EXPECT_NE(cli_mps.exit_code, 0);
  EXPECT_THAT(cli_mps.err, HasSubstr("FAILED_PRECONDITION"));
  v1::ListModelsResponse list;
  grpc::ClientContext context;
  ASSERT_TRUE(models()->ListModels(&context, v1::ListModelsRequest(), &list).ok());
  EXPECT_EQ(list.models_size(), 1);
  Generation g = Generate(channel(), Greedy("default", "Hello", 4));
  EXPECT_TRUE(g.status.ok()) << g.status.error_message();
}

TEST_F(IngotdTest, ServerInfoListsDevicesWithBackendsAndReasons) {
  v1::GetServerInfoResponse info;
  grpc::ClientContext context;
  ASSERT_TRUE(models()->GetServerInfo(&context, v1::GetServerInfoRequest(), &info).ok());
  std::map<std::string, v1::DeviceInfo> by_name;
  for (const v1::DeviceInfo& d : info.devices()) by_name[d.name()] = d;
  ASSERT_TRUE(by_name.count("cpu"));
  EXPECT_TRUE(by_name["cpu"].available());
  EXPECT_GT(by_name["cpu"].total_bytes(), 0);
  EXPECT_EQ(by_name["cpu"].backends(0), "native");
  for (const char* name : {"cuda:0", "mps", "mlx"}) {
    ASSERT_TRUE(by_name.count(name)) << name;
    if (std::string(name) != "cuda:0" || !HasGpu()) {
      EXPECT_FALSE(by_name[name].available()) << name;
      EXPECT_FALSE(by_name[name].reason().empty()) << name;
    }
  }
  std::vector<std::string> features(info.features().begin(), info.features().end());
  EXPECT_NE(std::find(features.begin(), features.end(), "backend:native"), features.end());
}

// The default model through libtorch on the CPU: the same greedy tokens as the native
// row and llama.cpp up to the first near-tie of llama.cpp's own run (the golden's
// free-running rule: margin < tie_margin; tests/model/placement_test.cc covers every
// step teacher-forced, with margins), reported as placed by torch, its bytes in the
// memory metrics.
TEST_F(IngotdTest, TorchBackendOnCpuServesTheSameGreedyText) {
  v1::GetServerInfoResponse server_info;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(models()->GetServerInfo(&context, v1::GetServerInfoRequest(), &server_info).ok());
  }
  std::vector<std::string> features(server_info.features().begin(), server_info.features().end());
  if (std::find(features.begin(), features.end(), "backend:torch") == features.end()) {
    GTEST_SKIP() << "this ingotd has no torch backend (INGOT_TORCH=OFF)";
  }
  v1::ModelInfo info;
  grpc::Status s = LoadOn(channel(), "smol-torch", "cpu", "torch", &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.backend(), "torch");
  EXPECT_EQ(info.device(), "cpu");
  EXPECT_GT(info.device_weight_bytes(), 0);
  std::string reps;
  for (const std::string& r : info.device_representations()) reps += r + "\n";
  // Q4_1 linears run on libtorch's int4 kernels; the tied Q8_0 head has none.
  EXPECT_THAT(reps, HasSubstr("int4pack/g32 x 210"));
  EXPECT_THAT(reps, HasSubstr("dequantized for backend torch"));
  const nlohmann::json golden = ReadJson("tests/data/llama/greedy.json");
  const float tie = golden["tie_margin"].get<float>();
  int compared = 0;
  for (const auto& g : golden["generations"]) {
    const std::string name = g["name"].get<std::string>();
    if (name.rfind("raw_", 0) != 0) continue;  // chat prompts carry special tokens
    size_t safe = 0;
    while (safe < g["steps"].size() && g["steps"][safe]["margin"].get<float>() >= tie) ++safe;
    if (safe < 6) continue;
    const std::string prompt = g["prompt"].get<std::string>();
    const int n = static_cast<int>(safe);
    Generation native = Generate(channel(), Greedy("default", prompt, n));
    Generation torch = Generate(channel(), Greedy("smol-torch", prompt, n));
    ASSERT_TRUE(native.status.ok() && torch.status.ok()) << torch.status.error_message();
    const auto want = g["generated"].get<std::vector<int32_t>>();
    EXPECT_EQ(torch.ids, native.ids) << name;
    EXPECT_EQ(torch.ids, std::vector<int32_t>(want.begin(), want.begin() + n)) << name;
    compared += n;
  }
  EXPECT_GE(compared, 12);
  const std::string metrics = HttpGetMetrics(server_->metrics_port());
  EXPECT_GT(MetricValue(metrics, "ingot_model_memory_bytes{device=\"cpu\",kind=\"mlp\",model=\"smol-torch\"}"), 0)
      << metrics.substr(0, 2000);
  CommandResult cli = RunCommand({Cli(), "--server", server_->address(), "info", "smol-torch"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_THAT(cli.out, HasSubstr("backend:       torch"));
  grpc::ClientContext context;
  v1::UnloadModelRequest unload;
  unload.set_name("smol-torch");
  v1::UnloadModelResponse unloaded;
  EXPECT_TRUE(models()->UnloadModel(&context, unload, &unloaded).ok());
}

}  // namespace
}  // namespace ingot::testing
