// The OpenAI-compatible HTTP API's JSON <-> engine structs, in one file (as
// server/convert.h is for gRPC): request bodies of POST /v1/completions and
// /v1/chat/completions become a GenerateRequest, engine chunks become OpenAI's
// response and stream-chunk objects, and an absl::Status becomes OpenAI's error object
// with its HTTP status. No I/O here; server/http_server.cc does the serving.
//
// Accepted: model, prompt (one string) or messages (string content or text parts),
// max_tokens / max_completion_tokens, temperature, top_p, n, stop, seed,
// presence_penalty, frequency_penalty, logit_bias, logprobs (completions: 0-5 top
// tokens; chat: true with top_logprobs 0-20), completions' echo, stream, stream_options.include_usage,
// response_format ({type: text | json_object | json_schema}), user (ignored), and
// ingot's extensions top_k, min_p, repetition_penalty. Refused with 400 naming the
// parameter: what ingot cannot honour (tools, functions, suffix, chat's echo, best_of > 1,
// several prompts, token-id prompts) rather than silently ignored.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/runtime/engine.h"
#include "nlohmann/json.hpp"

namespace ingot::server::http {

enum class Endpoint { kCompletions, kChat };

struct OpenAiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  GenerateRequest generate;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // answer with logprobs (sampling.logprobs is set too)
  // Completions' echo: each choice's text starts with the prompt; with logprobs its
  // logprobs start with the prompt's tokens (sampling.prompt_logprobs is set too), the
  // first one's value null.
  bool echo = false;
};

// Parses and validates a request body (ValidateSamplingParams included).
// INVALID_ARGUMENT carrying the parameter (ParamOf) on any problem.
absl::StatusOr<OpenAiRequest> ParseRequest(Endpoint endpoint, absl::string_view body);

// INVALID_ARGUMENT whose OpenAI error names `param`.
absl::Status InvalidParam(absl::string_view param, absl::string_view message);
// `status` with its OpenAI error naming `param` (an engine refusal of a field).
absl::Status WithParam(absl::Status status, absl::string_view param);
// The parameter an INVALID_ARGUMENT names: the one InvalidParam attached, else the
// leading field name of an engine message ("max_tokens must be >= 1, ..." ->
// "max_tokens"), else "".
std::string ParamOf(const absl::Status& status, Endpoint endpoint);

// OpenAI's error object and the HTTP status, the one place statuses become HTTP:
// INVALID_ARGUMENT/FAILED_PRECONDITION 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403,
// NOT_FOUND 404 (code model_not_found), ALREADY_EXISTS 409, RESOURCE_EXHAUSTED 429,
// CANCELLED 499, UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, others 500.
struct HttpError {
  int status = 500;
  nlohmann::json body;  // {"error": {"message", "type", "param", "code"}}
};
HttpError ToHttpError(const absl::Status& status, Endpoint endpoint = Endpoint::kCompletions);

// "stop", "length", or "cancelled" (drain or unload; OpenAI has no such reason).
const char* FinishReasonString(FinishReason reason);

// Token id -> its bytes, for logprobs (Engine::TokenPieces).
using TokenText = std::function<std::string(int32_t)>;

// One completion (choice) assembled from the engine's chunks.
struct Choice {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<TokenLogprob> logprobs;
  FinishReason finish_reason = FinishReason::kNone;
};

// The fields every response object shares.
struct ResponseMeta {
  std::string id;     // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;  // unix seconds
  std::string model;
};

// With echo and logprobs: the prompt's entries for the front of a choice's logprobs,
// from the engine's prompt logprobs (prompt tokens 1..n-1) and the prompt's first
// token, whose logprob is NaN (null in the answer: it has no context).
std::vector<TokenLogprob> EchoLogprobs(int32_t first_token, const std::vector<TokenLogprob>& prompt_logprobs);

// The non-streamed answer: choices in index order and the usage of the final chunk.
nlohmann::json CompletionResponse(Endpoint endpoint, const ResponseMeta& meta,
                                  const std::vector<Choice>& choices, const GenerationChunk& final,
                                  bool logprobs, const TokenText& text_of);
// One streamed chunk for `chunk` (text, logprobs, and the finish reason when it ends
// its choice). `first` (chat): the delta also carries role "assistant".
nlohmann::json StreamChunk(Endpoint endpoint, const ResponseMeta& meta, const GenerationChunk& chunk,
                           bool first, bool logprobs, bool include_usage, const TokenText& text_of);
// The usage-only chunk that ends a stream with include_usage (choices empty).
nlohmann::json UsageChunk(Endpoint endpoint, const ResponseMeta& meta, const GenerationChunk& final);
// GET /v1/models entries.
nlohmann::json ModelObject(const ModelInfo& info, int64_t created);

// JSON text; invalid UTF-8 (never expected: chunks hold whole characters) becomes U+FFFD.
std::string Dump(const nlohmann::json& value);

}  // namespace ingot::server::http
