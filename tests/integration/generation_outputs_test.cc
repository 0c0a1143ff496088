// Sampling outputs over gRPC and the CLI: logprobs with top alternatives (of generated
// and of prompt tokens), penalties, logit bias and stop token ids reach the engine and
// come back in GenerateResponse.
#include <cmath>

#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/integration/integration_fixture.h"

namespace ingot::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(IngotdTest, LogprobsPenaltiesBiasAndStopIdsOverGrpc) {
  v1::GenerateRequest r = Greedy("default", "The three primary colors are", 6);
  r.set_logprobs(true);
  r.set_top_logprobs(3);
  Generation g = Generate(channel(), r);
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  ASSERT_EQ(g.ids.size(), 6u);
  // Every message's logprobs line up with its token_ids; collect them in order.
  {
    auto stub = v1::GenerationService::NewStub(channel());
    grpc::ClientContext context;
    context.set_deadline(In(120));
    auto reader = stub->Generate(&context, r);
    v1::GenerateResponse response;
    std::vector<v1::TokenLogprob> lps;
    while (reader->Read(&response)) {
      ASSERT_EQ(response.logprobs_size(), response.token_ids_size());
      for (int i = 0; i < response.logprobs_size(); ++i) {
        EXPECT_EQ(response.logprobs(i).token_id(), response.token_ids(i));
        lps.push_back(response.logprobs(i));
      }
    }
    ASSERT_TRUE(reader->Finish().ok());
    ASSERT_EQ(lps.size(), 6u);
    for (const v1::TokenLogprob& lp : lps) {
      ASSERT_EQ(lp.top_size(), 3);
      EXPECT_EQ(lp.top(0).token_id(), lp.token_id()) << "greedy: the chosen token is the most likely";
      EXPECT_FLOAT_EQ(lp.top(0).logprob(), lp.logprob());
      EXPECT_LE(lp.logprob(), 0.0f);
      EXPECT_LE(lp.top(1).logprob(), lp.top(0).logprob());
    }
  }
  // logit_bias bans the first greedy token; stop_token_ids ends at the third.
  v1::GenerateRequest banned = Greedy("default", "The three primary colors are", 6);
  (*banned.mutable_logit_bias())[g.ids[0]] = -100.0f;
  Generation b = Generate(channel(), banned);
  ASSERT_TRUE(b.status.ok());
  EXPECT_NE(b.ids[0], g.ids[0]);
  v1::GenerateRequest stop = Greedy("default", "The three primary colors are", 6);
  stop.add_stop_token_ids(g.ids[2]);
  Generation s = Generate(channel(), stop);
  ASSERT_TRUE(s.status.ok());
  EXPECT_EQ(s.last.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(s.ids.back(), g.ids[2]);
  // Bad values are INVALID_ARGUMENT naming the field.
  v1::GenerateRequest bad = Greedy("default", "Hi", 2);
  bad.set_frequency_penalty(5);
  Generation e = Generate(channel(), bad);
  EXPECT_EQ(e.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(e.status.error_message(), HasSubstr("frequency_penalty"));
  bad = Greedy("default", "Hi", 2);
  bad.set_top_logprobs(3);
  e = Generate(channel(), bad);
  EXPECT_EQ(e.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(e.status.error_message(), HasSubstr("needs logprobs"));

  // The CLI: --logprobs N puts them in --json events.
  CommandResult cli = RunCommand({Cli(), "--server", server_->address(), "generate", "default",
                                  "The three primary colors are", "-n", "4", "--greedy", "--json", "--logprobs", "2",
                                  "--presence-penalty", "0.5"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  int with_logprobs = 0;
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(cli.out, '\n', absl::SkipEmpty()))) {
    const nlohmann::json event = nlohmann::json::parse(line);
    if (event.contains("logprobs")) {
      for (const auto& lp : event["logprobs"]) {
        EXPECT_EQ(lp["top"].size(), 2u) << line;
        ++with_logprobs;
      }
    }
  }
  EXPECT_EQ(with_logprobs, 4) << cli.out;
}

// Prompt logprobs come on the first message only, one per prompt token after the first
// (the prompt's own token ids, as Tokenize gives them), each with its top N; the values
// themselves are checked against the model's logits in tests/runtime/engine_test.cc.
TEST_F(IngotdTest, PromptLogprobsOverGrpcAndCli) {
  const std::string prompt = "The three primary colors are red, yellow and";
  v1::GenerateRequest r = Greedy("default", prompt, 3);
  r.set_prompt_logprobs(2);
  auto stub = v1::GenerationService::NewStub(channel());
  v1::TokenizeResponse tokens;
  {
    grpc::ClientContext context;
    v1::TokenizeRequest t;
    t.set_model("default");
    t.set_text(prompt);
    ASSERT_TRUE(stub->Tokenize(&context, t, &tokens).ok());
  }
  ASSERT_GT(tokens.ids_size(), 3);
  grpc::ClientContext context;
  context.set_deadline(In(120));
  auto reader = stub->Generate(&context, r);
  v1::GenerateResponse response;
  int messages = 0;
  while (reader->Read(&response)) {
    if (messages++ > 0) {
      EXPECT_EQ(response.prompt_logprobs_size(), 0) << "message " << messages;
      continue;
    }
    ASSERT_EQ(response.prompt_logprobs_size(), tokens.ids_size() - 1);
    for (int i = 0; i < response.prompt_logprobs_size(); ++i) {
      const v1::TokenLogprob& lp = response.prompt_logprobs(i);
      EXPECT_EQ(lp.token_id(), tokens.ids(i + 1));
      EXPECT_LE(lp.logprob(), 0.0f);
      ASSERT_EQ(lp.top_size(), 2);
      EXPECT_LE(lp.logprob(), lp.top(0).logprob() + 1e-6f) << "the top one is the most likely";
      EXPECT_LE(lp.top(1).logprob(), lp.top(0).logprob());
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(response.usage().prompt_tokens(), tokens.ids_size());
  EXPECT_EQ(response.usage().cached_prompt_tokens(), 0) << "the prompt is read in full";
  // Out of range: INVALID_ARGUMENT naming the field.
  v1::GenerateRequest bad = Greedy("default", "Hi", 2);
  bad.set_prompt_logprobs(21);
  Generation e = Generate(channel(), bad);
  EXPECT_EQ(e.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(e.status.error_message(), HasSubstr("prompt_logprobs"));

  // The CLI: --prompt-logprobs N puts them on the first --json event.
  CommandResult cli = RunCommand({Cli(), "--server", server_->address(), "generate", "default", prompt,
                                  "-n", "2", "--greedy", "--json", "--prompt-logprobs", "1"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  std::vector<int> sizes;
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(cli.out, '\n', absl::SkipEmpty()))) {
    const nlohmann::json event = nlohmann::json::parse(line);
    sizes.push_back(event.contains("prompt_logprobs") ? static_cast<int>(event["prompt_logprobs"].size()) : 0);
    if (sizes.size() == 1 && sizes[0] > 0) {
      EXPECT_EQ(event["prompt_logprobs"][0]["top"].size(), 1u) << line;
    }
  }
  ASSERT_FALSE(sizes.empty());
  EXPECT_EQ(sizes[0], tokens.ids_size() - 1) << cli.out;
  for (size_t i = 1; i < sizes.size(); ++i) EXPECT_EQ(sizes[i], 0) << cli.out;
}

}  // namespace
}  // namespace ingot::testing
