#include "server/http_openai.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ingot::server::http {
namespace {

using json = nlohmann::json;

// The payload InvalidParam attaches: the OpenAI parameter the error names.
constexpr char kParamUrl[] = "type.ingot.dev/openai-param";

// Defaults where OpenAI's differ from SamplingParams': completions answer 16 tokens
// unless told otherwise; chat keeps the engine's 256.
constexpr int32_t kCompletionsDefaultMaxTokens = 16;
constexpr int kMaxCompletionsLogprobs = 5;  // OpenAI's bound for /v1/completions

const char* TypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a number";
  }
}

// Typed readers: absent or null leaves *out alone.
absl::Status ReadBool(const json& body, const char* key, bool* out) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return InvalidParam(key, absl::StrCat("expected a boolean, got ", TypeName(*it)));
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadFloat(const json& body, const char* key, float* out) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) return InvalidParam(key, absl::StrCat("expected a number, got ", TypeName(*it)));
  const double v = it->get<double>();
  if (!std::isfinite(v)) return InvalidParam(key, "expected a finite number");
  *out = static_cast<float>(v);
  return absl::OkStatus();
}

absl::Status ReadInt(const json& body, const char* key, int64_t* out, bool* present = nullptr) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  const bool whole_float = it->is_number_float() && std::trunc(it->get<double>()) == it->get<double>() &&
                           std::abs(it->get<double>()) < 9e15;
  if (!it->is_number_integer() && !whole_float) {
    return InvalidParam(key, absl::StrCat("expected an integer, got ", TypeName(*it)));
  }
  *out = it->is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(
                                        it->get<uint64_t>(), std::numeric_limits<int64_t>::max()))
         : whole_float ? static_cast<int64_t>(it->get<double>())
                       : it->get<int64_t>();
  if (present) *present = true;
  return absl::OkStatus();
}

// An int that must fit int32 (the engine's fields); out-of-range values are refused
// here rather than wrapped.
absl::Status ReadInt32(const json& body, const char* key, int32_t* out) {
  int64_t v = *out;
  if (absl::Status s = ReadInt(body, key, &v); !s.ok()) return s;
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
    return InvalidParam(key, absl::StrCat("must fit in 32 bits, got ", v));
  }
  *out = static_cast<int32_t>(v);
  return absl::OkStatus();
}

// Refuses what ingot cannot honour instead of answering as if it were not asked.
absl::Status RefuseUnsupported(const json& body, Endpoint endpoint) {
  for (const char* key : {"tools", "tool_choice", "functions", "function_call", "suffix",
                          "audio", "modalities", "prediction"}) {
    auto it = body.find(key);
    if (it != body.end() && !it->is_null()) {
      return InvalidParam(key, absl::StrCat("'", key, "' is not supported by ingot"));
    }
  }
  if (auto it = body.find("echo"); endpoint == Endpoint::kChat && it != body.end() && it->is_boolean() &&
                                   it->get<bool>()) {
    return InvalidParam("echo", "echo: true is not supported by ingot");
  }
  if (auto it = body.find("best_of"); it != body.end() && !it->is_null() &&
                                      !(it->is_number_integer() && it->get<int64_t>() == 1)) {
    return InvalidParam("best_of", "only best_of: 1 is supported (use n for several completions)");
  }
  if (endpoint == Endpoint::kChat) {
    if (auto it = body.find("parallel_tool_calls"); it != body.end() && it->is_boolean() && it->get<bool>()) {
      return InvalidParam("parallel_tool_calls", "tool calls are not supported by ingot");
    }
  }
  return absl::OkStatus();
}

absl::Status ReadPrompt(const json& body, std::string* prompt) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return InvalidParam("prompt", "required");
  if (it->is_string()) {
    *prompt = it->get<std::string>();
  } else if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
    *prompt = (*it)[0].get<std::string>();
  } else if (it->is_array() && !it->empty() && (*it)[0].is_string()) {
    return InvalidParam("prompt", "one prompt per request (send the others as separate requests)");
  } else {
    return InvalidParam("prompt", "expected a string (token-id prompts are not supported)");
  }
  if (prompt->empty()) return InvalidParam("prompt", "must not be empty");
  return absl::OkStatus();
}

absl::Status ReadMessages(const json& body, std::vector<ChatMessage>* messages) {
  auto it = body.find("messages");
  if (it == body.end() || it->is_null()) return InvalidParam("messages", "required");
  if (!it->is_array() || it->empty()) return InvalidParam("messages", "expected a non-empty array");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return InvalidParam(where, absl::StrCat("expected an object, got ", TypeName(m)));
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) return InvalidParam(where + ".role", "required string");
    ChatMessage out;
    out.role = role->get<std::string>();
    if (out.role == "developer") out.role = "system";  // OpenAI's newer name for it
    if (out.role != "system" && out.role != "user" && out.role != "assistant" && out.role != "tool") {
      return InvalidParam(where + ".role", absl::StrCat("'", out.role,
                                                        "' is not one of system, developer, user, assistant, tool"));
    }
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      return InvalidParam(where + ".content", "required");
    } else if (content->is_string()) {
      out.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (size_t j = 0; j < content->size(); ++j) {
        const json& part = (*content)[j];
        const std::string part_where = absl::StrCat(where, ".content[", j, "]");
        auto type = part.is_object() ? part.find("type") : part.end();
        if (!part.is_object() || type == part.end() || !type->is_string() || *type != "text" ||
            !part.contains("text") || !part["text"].is_string()) {
          return InvalidParam(part_where, "only text parts ({type: text, text: ...}) are supported");
        }
        out.content += part["text"].get<std::string>();
      }
    } else {
      return InvalidParam(where + ".content", absl::StrCat("expected a string or an array of text parts, got ",
                                                           TypeName(*content)));
    }
    messages->push_back(std::move(out));
  }
  return absl::OkStatus();
}

absl::Status ReadStop(const json& body, std::vector<std::string>* stop) {
  auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (it->is_string()) {
    stop->push_back(it->get<std::string>());
  } else if (it->is_array()) {
    for (const json& s : *it) {
      if (!s.is_string()) return InvalidParam("stop", "expected a string or an array of strings");
      stop->push_back(s.get<std::string>());
    }
  } else {
    return InvalidParam("stop", absl::StrCat("expected a string or an array of strings, got ", TypeName(*it)));
  }
  for (const std::string& s : *stop) {
    if (s.empty()) return InvalidParam("stop", "stop strings must not be empty");
  }
  return absl::OkStatus();
}

absl::Status ReadLogitBias(const json& body, std::vector<std::pair<int32_t, float>>* bias) {
  auto it = body.find("logit_bias");
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) return InvalidParam("logit_bias", "expected an object of token id: bias");
  for (auto& [key, value] : it->items()) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(key, &id)) {
      return InvalidParam("logit_bias", absl::StrCat("key '", key, "' is not a token id"));
    }
    if (!value.is_number()) return InvalidParam("logit_bias", absl::StrCat("bias of ", key, " is not a number"));
    bias->emplace_back(id, value.get<float>());
  }
  std::sort(bias->begin(), bias->end());
  return absl::OkStatus();
}

absl::Status ReadResponseFormat(const json& body, OutputConstraint* constraint) {
  auto it = body.find("response_format");
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object() || !it->contains("type") || !(*it)["type"].is_string()) {
    return InvalidParam("response_format", "expected {type: text | json_object | json_schema}");
  }
  const std::string type = (*it)["type"].get<std::string>();
  if (type == "text") return absl::OkStatus();
  if (type == "json_object") {
    constraint->kind = OutputConstraint::Kind::kJsonObject;
    return absl::OkStatus();
  }
  if (type != "json_schema") {
    return InvalidParam("response_format", absl::StrCat("type '", type,
                                                        "' is not one of text, json_object, json_schema"));
  }
  auto spec = it->find("json_schema");
  if (spec == it->end() || !spec->is_object()) {
    return InvalidParam("response_format", "type json_schema needs json_schema: {name, schema}");
  }
  auto schema = spec->find("schema");
  if (schema == spec->end() || !(schema->is_object() || schema->is_boolean())) {
    return InvalidParam("response_format",
                        absl::StrCat("json_schema.schema: expected a JSON Schema object, got ",
                                     schema == spec->end() ? "nothing" : TypeName(*schema)));
  }
  constraint->kind = OutputConstraint::Kind::kJsonSchema;
  constraint->text = Dump(*schema);
  return absl::OkStatus();
}

// The engine's INVALID_ARGUMENT messages begin with the field they are about.
std::string LeadingField(absl::string_view message) {
  size_t n = 0;
  while (n < message.size() && (absl::ascii_isalnum(message[n]) || message[n] == '_')) ++n;
  std::string word(message.substr(0, n));
  if (message.substr(0, 7) == "at most" && message.find("stop strings") != absl::string_view::npos) return "stop";
  if (message.substr(0, 4) == "stop" && word == "stop") return "stop";
  static const char* kKnown[] = {"model", "max_tokens", "temperature", "top_k", "top_p", "min_p",
                                 "repetition_penalty", "n", "presence_penalty", "frequency_penalty",
                                 "logit_bias", "top_logprobs", "prompt", "messages", "seed"};
  for (const char* k : kKnown) {
    if (word == k) return word;
  }
  return "";
}

json Usage(const GenerationChunk& final) {
  json usage = {{"prompt_tokens", final.prompt_tokens},
                {"completion_tokens", final.completion_tokens},
                {"total_tokens", final.prompt_tokens + final.completion_tokens}};
  if (final.cached_prompt_tokens > 0) {
    usage["prompt_tokens_details"] = {{"cached_tokens", final.cached_prompt_tokens}};
  }
  return usage;
}

json Bytes(const std::string& s) {
  json out = json::array();
  for (unsigned char c : s) out.push_back(static_cast<int>(c));
  return out;
}

// Chat: {"content": [{token, logprob, bytes, top_logprobs: [...]}]}.
json ChatLogprobs(const std::vector<TokenLogprob>& lps, const TokenText& text_of) {
  json content = json::array();
  for (const TokenLogprob& lp : lps) {
    const std::string token = text_of(lp.token_id);
    json top = json::array();
    for (const auto& [id, v] : lp.top) {
      const std::string t = text_of(id);
      top.push_back({{"token", t}, {"logprob", v}, {"bytes", Bytes(t)}});
    }
    content.push_back({{"token", token}, {"logprob", lp.logprob}, {"bytes", Bytes(token)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

// Completions (legacy shape): parallel arrays; text_offset counts bytes from the start
// of this choice's text (`offset` is where these tokens begin).
json CompletionLogprobs(const std::vector<TokenLogprob>& lps, const TokenText& text_of, size_t offset) {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
  for (const TokenLogprob& lp : lps) {
    const std::string token = text_of(lp.token_id);
    tokens.push_back(token);
    if (std::isnan(lp.logprob)) {  // an echoed prompt's first token
      token_logprobs.push_back(nullptr);
      top.push_back(nullptr);
    } else {
      token_logprobs.push_back(lp.logprob);
      json alternatives = json::object();
      for (const auto& [id, v] : lp.top) alternatives[text_of(id)] = v;
      top.push_back(std::move(alternatives));
    }
    offsets.push_back(offset);
    offset += token.size();
  }
  return {{"tokens", std::move(tokens)}, {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top)}, {"text_offset", std::move(offsets)}};
}

json Envelope(Endpoint endpoint, const ResponseMeta& meta, bool chunk) {
  const char* object = endpoint == Endpoint::kChat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                   : "text_completion";
  return {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model},
          {"system_fingerprint", "ingot-" INGOT_VERSION}};
}

json FinishJson(FinishReason r) {
  return r == FinishReason::kNone ? json(nullptr) : json(FinishReasonString(r));
}

}  // namespace

absl::Status InvalidParam(absl::string_view param, absl::string_view message) {
  absl::Status s = absl::InvalidArgumentError(absl::StrCat(param, ": ", message));
  s.SetPayload(kParamUrl, absl::Cord(std::string(param)));
  return s;
}

absl::Status WithParam(absl::Status status, absl::string_view param) {
  if (!status.ok()) status.SetPayload(kParamUrl, absl::Cord(std::string(param)));
  return status;
}

std::string ParamOf(const absl::Status& status, Endpoint endpoint) {
  if (absl::optional<absl::Cord> p = status.GetPayload(kParamUrl)) return std::string(*p);
  std::string field = LeadingField(status.message());
  if (field == "prompt" && endpoint == Endpoint::kChat) return "messages";
  return field;
}

HttpError ToHttpError(const absl::Status& status, Endpoint endpoint) {
  HttpError e;
  std::string type = "server_error";
  json param = nullptr;
  json code = nullptr;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange: {
      e.status = 400;
      type = "invalid_request_error";
      if (std::string p = ParamOf(status, endpoint); !p.empty()) param = p;
      break;
    }
    case absl::StatusCode::kUnauthenticated:
      e.status = 401;
      type = "authentication_error";
      code = "invalid_api_key";
      break;
    case absl::StatusCode::kPermissionDenied:
      e.status = 403;
      type = "permission_error";
      break;
    case absl::StatusCode::kNotFound:
      e.status = 404;
      type = "invalid_request_error";
      param = "model";
      code = "model_not_found";
      break;
    case absl::StatusCode::kAlreadyExists: e.status = 409; type = "conflict_error"; break;
    case absl::StatusCode::kResourceExhausted:
      e.status = 429;
      type = "rate_limit_error";
      code = "rate_limit_exceeded";
      break;
    case absl::StatusCode::kCancelled: e.status = 499; type = "cancelled"; break;
    case absl::StatusCode::kUnimplemented:
      e.status = 501;
      type = "not_implemented_error";
      if (std::string p = ParamOf(status, endpoint); !p.empty()) param = p;
      break;
    case absl::StatusCode::kUnavailable: e.status = 503; type = "service_unavailable"; break;
    case absl::StatusCode::kDeadlineExceeded: e.status = 504; type = "timeout"; break;
    default: e.status = 500; break;
  }
  e.body = {{"error", {{"message", std::string(status.message())}, {"type", type}, {"param", param},
                       {"code", code}}}};
  return e;
}

const char* FinishReasonString(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength: return "length";
    case FinishReason::kStop:
    case FinishReason::kEos: return "stop";
    case FinishReason::kCancelled: return "cancelled";
    // Not one of OpenAI's: the response_format's grammar had no token to continue with.
    case FinishReason::kGrammarDeadEnd: return "grammar_dead_end";
    case FinishReason::kNone: break;
  }
  return "stop";
}

absl::StatusOr<OpenAiRequest> ParseRequest(Endpoint endpoint, absl::string_view body_text) {
  json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return InvalidParam("body", "the request body is not valid JSON");
  if (!body.is_object()) return InvalidParam("body", "the request body must be a JSON object");
  if (absl::Status s = RefuseUnsupported(body, endpoint); !s.ok()) return s;

  OpenAiRequest out;
  out.endpoint = endpoint;
  GenerateRequest& g = out.generate;
  auto model = body.find("model");
  if (model == body.end() || !model->is_string() || model->get<std::string>().empty()) {
    return InvalidParam("model", "required string");
  }
  g.model = model->get<std::string>();
  if (endpoint == Endpoint::kChat) {
    if (absl::Status s = ReadMessages(body, &g.messages); !s.ok()) return s;
  } else {
    if (absl::Status s = ReadPrompt(body, &g.prompt); !s.ok()) return s;
  }

  SamplingParams& p = g.sampling;
  if (endpoint == Endpoint::kCompletions) p.max_tokens = kCompletionsDefaultMaxTokens;
  const char* max_tokens_key = "max_tokens";
  if (absl::Status s = ReadInt32(body, "max_tokens", &p.max_tokens); !s.ok()) return s;
  if (endpoint == Endpoint::kChat && body.contains("max_completion_tokens") &&
      !body["max_completion_tokens"].is_null()) {
    max_tokens_key = "max_completion_tokens";  // OpenAI's newer name wins
    if (absl::Status s = ReadInt32(body, "max_completion_tokens", &p.max_tokens); !s.ok()) return s;
  }
  if (p.max_tokens < 1) {
    return InvalidParam(max_tokens_key, absl::StrCat("must be >= 1, got ", p.max_tokens));
  }
  if (absl::Status s = ReadFloat(body, "temperature", &p.temperature); !s.ok()) return s;
  if (absl::Status s = ReadFloat(body, "top_p", &p.top_p); !s.ok()) return s;
  if (absl::Status s = ReadFloat(body, "presence_penalty", &p.presence_penalty); !s.ok()) return s;
  if (absl::Status s = ReadFloat(body, "frequency_penalty", &p.frequency_penalty); !s.ok()) return s;
  if (absl::Status s = ReadInt32(body, "n", &p.n); !s.ok()) return s;
  // ingot's (and vLLM's) extensions.
  if (absl::Status s = ReadInt32(body, "top_k", &p.top_k); !s.ok()) return s;
  if (p.top_k < 0) p.top_k = 0;  // vLLM's -1 = off
  if (absl::Status s = ReadFloat(body, "min_p", &p.min_p); !s.ok()) return s;
  if (absl::Status s = ReadFloat(body, "repetition_penalty", &p.repetition_penalty); !s.ok()) return s;
  int64_t seed = 0;
  bool has_seed = false;
  if (absl::Status s = ReadInt(body, "seed", &seed, &has_seed); !s.ok()) return s;
  if (has_seed) p.seed = static_cast<uint64_t>(seed);
  if (absl::Status s = ReadStop(body, &p.stop); !s.ok()) return s;
  if (absl::Status s = ReadLogitBias(body, &p.logit_bias); !s.ok()) return s;

  if (endpoint == Endpoint::kChat) {
    if (absl::Status s = ReadBool(body, "logprobs", &p.logprobs); !s.ok()) return s;
    if (absl::Status s = ReadInt32(body, "top_logprobs", &p.top_logprobs); !s.ok()) return s;
    if (p.top_logprobs > 0 && !p.logprobs) return InvalidParam("top_logprobs", "needs logprobs: true");
  } else if (auto it = body.find("logprobs"); it != body.end() && !it->is_null()) {
    int32_t top = 0;
    if (absl::Status s = ReadInt32(body, "logprobs", &top); !s.ok()) return s;
    if (top < 0 || top > kMaxCompletionsLogprobs) {
      return InvalidParam("logprobs", absl::StrCat("must be in [0, ", kMaxCompletionsLogprobs, "], got ", top));
    }
    p.logprobs = true;
    p.top_logprobs = top;
  }
  out.logprobs = p.logprobs;
  if (endpoint == Endpoint::kCompletions) {
    if (absl::Status s = ReadBool(body, "echo", &out.echo); !s.ok()) return s;
    if (out.echo && p.logprobs) p.prompt_logprobs = p.top_logprobs;
  }

  if (absl::Status s = ReadBool(body, "stream", &out.stream); !s.ok()) return s;
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!out.stream) return InvalidParam("stream_options", "only allowed with stream: true");
    if (!it->is_object()) return InvalidParam("stream_options", "expected an object");
    if (absl::Status s = ReadBool(*it, "include_usage", &out.include_usage); !s.ok()) {
      return InvalidParam("stream_options", std::string(s.message()));
    }
  }
  if (absl::Status s = ReadResponseFormat(body, &p.constraint); !s.ok()) return s;
  if (auto it = body.find("user"); it != body.end() && !it->is_null() && !it->is_string()) {
    return InvalidParam("user", "expected a string");
  }
  // The engine's ranges, checked before any work; ParamOf maps its field names.
  // (The constraint itself is compiled by the engine, which names what it refuses.)
  if (absl::Status s = ValidateSamplingParams(p); !s.ok()) return s;
  return out;
}

std::vector<TokenLogprob> EchoLogprobs(int32_t first_token, const std::vector<TokenLogprob>& prompt_logprobs) {
  std::vector<TokenLogprob> out;
  out.reserve(prompt_logprobs.size() + 1);
  TokenLogprob first;
  first.token_id = first_token;
  first.logprob = std::numeric_limits<float>::quiet_NaN();
  out.push_back(std::move(first));
  out.insert(out.end(), prompt_logprobs.begin(), prompt_logprobs.end());
  return out;
}

nlohmann::json CompletionResponse(Endpoint endpoint, const ResponseMeta& meta,
                                  const std::vector<Choice>& choices, const GenerationChunk& final,
                                  bool logprobs, const TokenText& text_of) {
  json out = Envelope(endpoint, meta, /*chunk=*/false);
  json list = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const Choice& c = choices[i];
    json choice = {{"index", i}, {"finish_reason", FinishJson(c.finish_reason)}};
    if (endpoint == Endpoint::kChat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      choice["logprobs"] = logprobs ? ChatLogprobs(c.logprobs, text_of) : json(nullptr);
    } else {
      choice["text"] = c.text;
      choice["logprobs"] = logprobs ? CompletionLogprobs(c.logprobs, text_of, 0) : json(nullptr);
    }
    list.push_back(std::move(choice));
  }
  out["choices"] = std::move(list);
  out["usage"] = Usage(final);
  return out;
}

nlohmann::json StreamChunk(Endpoint endpoint, const ResponseMeta& meta, const GenerationChunk& chunk,
                           bool first, bool logprobs, bool include_usage, const TokenText& text_of) {
  json out = Envelope(endpoint, meta, /*chunk=*/true);
  json choice = {{"index", chunk.index}, {"finish_reason", FinishJson(chunk.finish_reason)}};
  if (endpoint == Endpoint::kChat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!chunk.text.empty() || first) delta["content"] = chunk.text;
    choice["delta"] = std::move(delta);
    choice["logprobs"] = logprobs && !chunk.logprobs.empty() ? ChatLogprobs(chunk.logprobs, text_of)
                                                             : json(nullptr);
  } else {
    choice["text"] = chunk.text;
    // Offsets within this chunk: a streamed client sums them itself, as OpenAI's do.
    choice["logprobs"] = logprobs ? CompletionLogprobs(chunk.logprobs, text_of, 0) : json(nullptr);
  }
  out["choices"] = json::array({std::move(choice)});
  if (include_usage) out["usage"] = nullptr;
  return out;
}

nlohmann::json UsageChunk(Endpoint endpoint, const ResponseMeta& meta, const GenerationChunk& final) {
  json out = Envelope(endpoint, meta, /*chunk=*/true);
  out["choices"] = json::array();
  out["usage"] = Usage(final);
  return out;
}

nlohmann::json ModelObject(const ModelInfo& info, int64_t created) {
  return {{"id", info.name}, {"object", "model"}, {"created", created}, {"owned_by", "ingot"},
          {"context_length", info.context_length}, {"device", info.device},
          {"format", info.format}, {"quantization", info.quantization}};
}

std::string Dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace ingot::server::http
