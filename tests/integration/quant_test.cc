// Quantize on request through the real server: gRPC QuantizeModel streams progress and
// registers a new model that generates while the source keeps serving; bad configs get
// INVALID_ARGUMENT naming the field; the CLI's quantize/eval/methods; the metrics.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingot/v1/quantization.grpc.pb.h"
#include "tests/integration/integration_fixture.h"
#include "tests/integration/ingotd_process.h"

namespace ingot::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(IngotdTest, QuantizeModelStreamsProgressAndServesBoth) {
  auto stub = v1::QuantizationService::NewStub(channel());
  v1::QuantizeModelRequest request;
  request.set_source("default");
  request.set_target("hqq4");
  request.mutable_config()->set_method("hqq");
  request.mutable_config()->set_bits(4);
  request.mutable_config()->set_group_size(64);
  grpc::ClientContext context;
  context.set_deadline(In(300));
  auto reader = stub->QuantizeModel(&context, request);
  v1::QuantizeModelResponse response, last;
  int progress = 0;
  while (reader->Read(&response)) {
    ++progress;
    if (response.has_model()) last = response;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_GT(progress, 10);
  EXPECT_EQ(last.model().name(), "hqq4");
  EXPECT_EQ(last.quantized_modules(), 210);
  EXPECT_LT(last.bytes_after(), last.bytes_before());
  bool affine = false;
  for (const auto& k : last.model().tensor_kinds()) affine |= k.representation() == "affine4/g64";
  EXPECT_TRUE(affine);
  // Both generate.
  Generation q = Generate(channel(), Greedy("hqq4", "The capital of France is", 6));
  Generation d = Generate(channel(), Greedy("default", "The capital of France is", 6));
  EXPECT_TRUE(q.status.ok()) << q.status.error_message();
  EXPECT_TRUE(d.status.ok()) << d.status.error_message();
  EXPECT_EQ(q.ids.size(), 6u);

  // The CLI: eval against the source, methods; metrics record the run.
  CommandResult eval = RunCommand({Cli(), "--server", server_->address(), "eval", "hqq4",
                                   "--reference", "default", "--max-tokens", "200",
                                   "--context-length", "100"});
  EXPECT_EQ(eval.exit_code, 0) << eval.err;
  EXPECT_THAT(eval.out, HasSubstr("perplexity"));
  EXPECT_THAT(eval.out, HasSubstr("mean KL"));
  CommandResult methods = RunCommand({Cli(), "--server", server_->address(), "methods"});
  EXPECT_EQ(methods.exit_code, 0) << methods.err;
  EXPECT_THAT(methods.out, HasSubstr("bitsandbytes"));
  const std::string metrics = HttpGetMetrics(server_->metrics_port());
  EXPECT_GE(MetricValue(metrics, R"(ingot_quantizations_total{code="OK",method="hqq"})"), 1);
  EXPECT_GE(MetricValue(metrics, R"(ingot_quantization_duration_seconds_count{method="hqq"})"), 1);
  EXPECT_GT(MetricValue(metrics, R"(ingot_model_memory_bytes{device="cpu",kind="mlp",model="hqq4"})"), 0);

  grpc::ClientContext unload_ctx;
  v1::UnloadModelRequest unload;
  unload.set_name("hqq4");
  v1::UnloadModelResponse unloaded;
  EXPECT_TRUE(models()->UnloadModel(&unload_ctx, unload, &unloaded).ok());
}

TEST_F(IngotdTest, BadQuantizationConfigsNameTheField) {
  auto stub = v1::QuantizationService::NewStub(channel());
  struct Case {
    const char* method;
    int bits;
    int64_t group;
    const char* field;
  };
  for (const Case& c : {Case{"hqq", 5, 0, "bits"}, Case{"hqq", 4, 48, "group_size"},
                        Case{"sparse", 0, 0, "method"}}) {
    v1::QuantizeModelRequest request;
    request.set_source("default");
    request.set_target("bad");
    request.mutable_config()->set_method(c.method);
    request.mutable_config()->set_bits(c.bits);
    request.mutable_config()->set_group_size(c.group);
    grpc::ClientContext context;
    auto reader = stub->QuantizeModel(&context, request);
    v1::QuantizeModelResponse response;
    while (reader->Read(&response)) {}
    grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_THAT(status.error_message(), HasSubstr(std::string(c.field) + ":"));
  }
  // ValidateQuantization lists problems without failing the call.
  v1::ValidateQuantizationRequest validate;
  validate.set_model("default");
  validate.mutable_config()->set_method("hqq");
  validate.mutable_config()->add_skip_modules("*.nothing");
  grpc::ClientContext context;
  v1::ValidateQuantizationResponse problems;
  ASSERT_TRUE(stub->ValidateQuantization(&context, validate, &problems).ok());
  EXPECT_FALSE(problems.valid());
  ASSERT_EQ(problems.problems_size(), 1);
  EXPECT_EQ(problems.problems(0).field(), "skip_modules[0]");
  // The server still serves the source.
  EXPECT_TRUE(Generate(channel(), Greedy("default", "Hi", 2)).status.ok());
}

}  // namespace
}  // namespace ingot::testing
