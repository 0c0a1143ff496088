// The OpenAI JSON <-> engine conversion (server/http_openai.h): what each request
// parameter becomes in the engine's structs, the parameter each refusal names, the
// HTTP status of each code, and the shape of responses and stream chunks. The
// served API against the real `openai` client is tests/http/openai_test.py.
#include "server/http_openai.h"

#include <string>

#include "tests/test_util.h"

namespace ingot::server::http {
namespace {

using json = nlohmann::json;
using ::testing::ElementsAre;

absl::StatusOr<OpenAiRequest> Chat(const json& extra) {
  json body = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  body.update(extra);
  return ParseRequest(Endpoint::kChat, body.dump());
}

absl::StatusOr<OpenAiRequest> Completion(const json& extra) {
  json body = {{"model", "m"}, {"prompt", "once upon"}};
  body.update(extra);
  return ParseRequest(Endpoint::kCompletions, body.dump());
}

// The parameter and HTTP status OpenAI's error object would carry.
std::pair<std::string, int> Refusal(const absl::StatusOr<OpenAiRequest>& r, Endpoint e = Endpoint::kChat) {
  EXPECT_FALSE(r.ok());
  HttpError err = ToHttpError(r.status(), e);
  const json& param = err.body["error"]["param"];
  return {param.is_null() ? "" : param.get<std::string>(), err.status};
}

TEST(HttpOpenAiTest, ChatParametersReachSamplingParams) {
  auto r = Chat({{"max_completion_tokens", 7}, {"temperature", 0.5}, {"top_p", 0.9}, {"n", 2},
                 {"seed", 42}, {"stop", {"\n", "END"}}, {"presence_penalty", 0.25},
                 {"frequency_penalty", -0.5}, {"logprobs", true}, {"top_logprobs", 3},
                 {"stream", true}, {"stream_options", {{"include_usage", true}}},
                 {"logit_bias", {{"17", -100}, {"3", 5}}}, {"user", "u"}});
  ASSERT_TRUE(r.ok()) << r.status();
  const SamplingParams& p = r->generate.sampling;
  EXPECT_EQ(r->generate.model, "m");
  ASSERT_EQ(r->generate.messages.size(), 1u);
  EXPECT_EQ(r->generate.messages[0].role, "user");
  EXPECT_EQ(r->generate.messages[0].content, "hi");
  EXPECT_TRUE(r->generate.prompt.empty());
  EXPECT_EQ(p.max_tokens, 7);
  EXPECT_FLOAT_EQ(p.temperature, 0.5f);
  EXPECT_FLOAT_EQ(p.top_p, 0.9f);
  EXPECT_EQ(p.n, 2);
  ASSERT_TRUE(p.seed.has_value());
  EXPECT_EQ(*p.seed, 42u);
  EXPECT_THAT(p.stop, ElementsAre("\n", "END"));
  EXPECT_FLOAT_EQ(p.presence_penalty, 0.25f);
  EXPECT_FLOAT_EQ(p.frequency_penalty, -0.5f);
  EXPECT_TRUE(p.logprobs);
  EXPECT_EQ(p.top_logprobs, 3);
  EXPECT_THAT(p.logit_bias, ElementsAre(std::pair<int32_t, float>{3, 5.0f}, std::pair<int32_t, float>{17, -100.0f}));
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(p.constraint.kind, OutputConstraint::Kind::kNone);
}

TEST(HttpOpenAiTest, DefaultsAndContentParts) {
  auto chat = Chat({{"messages", {{{"role", "developer"}, {"content", "be brief"}},
                                  {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "a"}},
                                                                  {{"type", "text"}, {"text", "b"}}}}}}}});
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->generate.messages[0].role, "system");
  EXPECT_EQ(chat->generate.messages[1].content, "ab");
  EXPECT_EQ(chat->generate.sampling.max_tokens, SamplingParams{}.max_tokens);
  EXPECT_FALSE(chat->stream);
  EXPECT_FALSE(chat->generate.sampling.seed.has_value());

  auto completion = Completion({{"prompt", {"only one"}}, {"logprobs", 2}});
  ASSERT_TRUE(completion.ok()) << completion.status();
  EXPECT_EQ(completion->generate.prompt, "only one");
  EXPECT_EQ(completion->generate.sampling.max_tokens, 16);  // OpenAI's completions default
  EXPECT_TRUE(completion->generate.sampling.logprobs);
  EXPECT_EQ(completion->generate.sampling.top_logprobs, 2);
  EXPECT_FALSE(completion->echo);
  EXPECT_EQ(completion->generate.sampling.prompt_logprobs, -1);
  // echo with logprobs asks the engine for the prompt's logprobs with as many alternatives.
  auto echo = Completion({{"echo", true}, {"logprobs", 3}});
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_TRUE(echo->echo);
  EXPECT_EQ(echo->generate.sampling.prompt_logprobs, 3);
  echo = Completion({{"echo", true}});
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_TRUE(echo->echo);
  EXPECT_EQ(echo->generate.sampling.prompt_logprobs, -1) << "no logprobs: the prompt's text only";
}

TEST(HttpOpenAiTest, ResponseFormatBecomesTheConstraint) {
  auto object = Chat({{"response_format", {{"type", "json_object"}}}});
  ASSERT_TRUE(object.ok()) << object.status();
  EXPECT_EQ(object->generate.sampling.constraint.kind, OutputConstraint::Kind::kJsonObject);

  const json schema = {{"type", "object"}, {"properties", {{"a", {{"type", "integer"}}}}}, {"required", {"a"}}};
  auto with_schema = Chat({{"response_format", {{"type", "json_schema"},
                                                {"json_schema", {{"name", "x"}, {"schema", schema}}}}}});
  ASSERT_TRUE(with_schema.ok()) << with_schema.status();
  EXPECT_EQ(with_schema->generate.sampling.constraint.kind, OutputConstraint::Kind::kJsonSchema);
  EXPECT_EQ(json::parse(with_schema->generate.sampling.constraint.text), schema);

  auto text = Chat({{"response_format", {{"type", "text"}}}});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->generate.sampling.constraint.kind, OutputConstraint::Kind::kNone);

  for (const json& bad : {json{{"type", "json_schema"}, {"json_schema", {{"name", "x"}, {"schema", "object"}}}},
                          json{{"type", "json_schema"}}, json{{"type", "yaml"}}, json("json")}) {
    auto r = Chat({{"response_format", bad}});
    EXPECT_EQ(Refusal(r), std::make_pair(std::string("response_format"), 400)) << bad.dump();
  }
}

TEST(HttpOpenAiTest, EveryRefusalNamesItsParameter) {
  struct Case {
    json extra;
    std::string param;
  };
  const Case cases[] = {
      {{{"temperature", "hot"}}, "temperature"},
      {{{"temperature", -1}}, "temperature"},
      {{{"top_p", 0}}, "top_p"},
      {{{"n", 17}}, "n"},
      {{{"max_tokens", 0}}, "max_tokens"},
      {{{"max_completion_tokens", -3}}, "max_completion_tokens"},
      {{{"max_tokens", 1e12}}, "max_tokens"},
      {{{"presence_penalty", 3}}, "presence_penalty"},
      {{{"frequency_penalty", -2.5}}, "frequency_penalty"},
      {{{"seed", "x"}}, "seed"},
      {{{"stop", 5}}, "stop"},
      {{{"stop", {""}}}, "stop"},
      {{{"top_logprobs", 3}}, "top_logprobs"},
      {{{"logprobs", true}, {"top_logprobs", 21}}, "top_logprobs"},
      {{{"logit_bias", {{"abc", 1}}}}, "logit_bias"},
      {{{"stream_options", {{"include_usage", true}}}}, "stream_options"},
      {{{"tools", json::array({{{"type", "function"}}})}}, "tools"},
      {{{"messages", json::array()}}, "messages"},
      {{{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}, "messages[0].role"},
      {{{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}}, "messages[0].content[0]"},
      {{{"model", ""}}, "model"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Refusal(Chat(c.extra)), std::make_pair(c.param, 400)) << c.extra.dump();
  }
  EXPECT_EQ(Refusal(Completion({{"prompt", {"a", "b"}}}), Endpoint::kCompletions),
            std::make_pair(std::string("prompt"), 400));
  EXPECT_EQ(Refusal(Completion({{"logprobs", 6}}), Endpoint::kCompletions),
            std::make_pair(std::string("logprobs"), 400));
  EXPECT_EQ(Refusal(Chat({{"echo", true}})), std::make_pair(std::string("echo"), 400));
  EXPECT_EQ(Refusal(Completion({{"echo", "yes"}}), Endpoint::kCompletions),
            std::make_pair(std::string("echo"), 400));
  EXPECT_EQ(Refusal(ParseRequest(Endpoint::kChat, "{not json")), std::make_pair(std::string("body"), 400));
}

TEST(HttpOpenAiTest, StatusCodesAndErrorObjects) {
  struct Case {
    absl::Status status;
    int http;
    std::string type;
  };
  const Case cases[] = {
      {absl::InvalidArgumentError("x"), 400, "invalid_request_error"},
      {absl::UnauthenticatedError("x"), 401, "authentication_error"},
      {absl::PermissionDeniedError("x"), 403, "permission_error"},
      {absl::NotFoundError("model 'q' is not loaded"), 404, "invalid_request_error"},
      {absl::ResourceExhaustedError("x"), 429, "rate_limit_error"},
      {absl::UnimplementedError("x"), 501, "not_implemented_error"},
      {absl::UnavailableError("x"), 503, "service_unavailable"},
      {absl::InternalError("x"), 500, "server_error"},
  };
  for (const Case& c : cases) {
    HttpError e = ToHttpError(c.status);
    EXPECT_EQ(e.status, c.http) << c.status;
    EXPECT_EQ(e.body["error"]["type"], c.type) << c.status;
    EXPECT_EQ(e.body["error"]["message"], std::string(c.status.message()));
    EXPECT_TRUE(e.body["error"].contains("param"));
    EXPECT_TRUE(e.body["error"].contains("code"));
  }
  EXPECT_EQ(ToHttpError(absl::NotFoundError("m")).body["error"]["code"], "model_not_found");
  // The engine's own messages name their field.
  EXPECT_EQ(ToHttpError(absl::InvalidArgumentError("top_k must be >= 0 (0 = off), got -2")).body["error"]["param"],
            "top_k");
  EXPECT_EQ(ToHttpError(absl::InvalidArgumentError("prompt has 9000 tokens; ..."), Endpoint::kChat)
                .body["error"]["param"],
            "messages");
  EXPECT_EQ(ToHttpError(WithParam(absl::UnimplementedError("not built"), "response_format")).body["error"]["param"],
            "response_format");
}

TEST(HttpOpenAiTest, ResponseAndChunkShapes) {
  ResponseMeta meta{"chatcmpl-1", 1700000000, "m"};
  auto text_of = [](int32_t id) { return id == 1 ? std::string("He") : std::string("llo"); };
  GenerationChunk final;
  final.final = true;
  final.prompt_tokens = 5;
  final.completion_tokens = 2;
  Choice choice;
  choice.text = "Hello";
  choice.finish_reason = FinishReason::kEos;
  choice.logprobs = {TokenLogprob{1, -0.5f, {{1, -0.5f}, {2, -1.5f}}}, TokenLogprob{2, -0.25f, {}}};
  json chat = CompletionResponse(Endpoint::kChat, meta, {choice}, final, true, text_of);
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["content"], "Hello");
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(chat["usage"]["total_tokens"], 7);
  const json& lp = chat["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(lp.size(), 2u);
  EXPECT_EQ(lp[0]["token"], "He");
  EXPECT_EQ(lp[0]["bytes"], json({72, 101}));
  EXPECT_EQ(lp[0]["top_logprobs"][1]["token"], "llo");

  json completion = CompletionResponse(Endpoint::kCompletions, meta, {choice}, final, true, text_of);
  EXPECT_EQ(completion["object"], "text_completion");
  EXPECT_EQ(completion["choices"][0]["text"], "Hello");
  EXPECT_EQ(completion["choices"][0]["logprobs"]["text_offset"], json({0, 2}));
  EXPECT_EQ(completion["choices"][0]["logprobs"]["top_logprobs"][0]["llo"], -1.5f);
  // Echo: the prompt's first token has no logprob (null), the others theirs.
  Choice echoed = choice;
  echoed.text = "HeHello";
  std::vector<TokenLogprob> front = EchoLogprobs(1, {TokenLogprob{2, -3.0f, {{1, -0.1f}}}});
  echoed.logprobs.insert(echoed.logprobs.begin(), front.begin(), front.end());
  json e = CompletionResponse(Endpoint::kCompletions, meta, {echoed}, final, true, text_of);
  const json& elp = e["choices"][0]["logprobs"];
  EXPECT_EQ(elp["tokens"], json({"He", "llo", "He", "llo"}));
  EXPECT_EQ(elp["token_logprobs"], json({nullptr, -3.0f, -0.5f, -0.25f}));
  EXPECT_TRUE(elp["top_logprobs"][0].is_null());
  EXPECT_EQ(elp["top_logprobs"][1]["He"], -0.1f);
  EXPECT_EQ(elp["text_offset"], json({0, 2, 5, 7}));

  GenerationChunk piece;
  piece.index = 1;
  piece.text = "lo";
  piece.finish_reason = FinishReason::kLength;
  json chunk = StreamChunk(Endpoint::kChat, meta, piece, false, false, true, text_of);
  EXPECT_EQ(chunk["object"], "chat.completion.chunk");
  EXPECT_EQ(chunk["choices"][0]["index"], 1);
  EXPECT_EQ(chunk["choices"][0]["delta"], json({{"content", "lo"}}));
  EXPECT_EQ(chunk["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(chunk["usage"].is_null());
  json role = StreamChunk(Endpoint::kChat, meta, GenerationChunk{}, true, false, false, text_of);
  EXPECT_EQ(role["choices"][0]["delta"]["role"], "assistant");
  EXPECT_FALSE(role.contains("usage"));
  json usage = UsageChunk(Endpoint::kChat, meta, final);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["prompt_tokens"], 5);
}

}  // namespace
}  // namespace ingot::server::http
