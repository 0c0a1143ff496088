// POST /v1/completions and /v1/chat/completions: one request through the same engine
// entry point as gRPC's Generate (server/generation_service.cc), answered whole or as
// server-sent events.
#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <memory>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/runtime/engine.h"
#include "server/http_openai.h"
#include "server/http_server.h"
#include "server/limits.h"
#include "server/metrics.h"
#include "server/status.h"
#include "spdlog/spdlog.h"

namespace ingot::server {
namespace {

using Clock = std::chrono::steady_clock;
using http::Endpoint;
using json = nlohmann::json;

// How long a waiting handler sleeps between looks at its client: the delay before a
// disconnect cancels the generation (a stream also notices at its next token).
constexpr auto kPoll = std::chrono::seconds(1);

// What the engine's callbacks (its scheduler thread) hand to the request's thread.
struct Exchange {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<GenerationChunk> chunks;  // on_chunk's, in order
  bool done = false;
  absl::Status status;                 // on_done's
  GenerationChunk final;               // on_done's
  Clock::time_point first_token{}, last_token{};

  void Note(size_t tokens) {  // with mu held
    if (tokens == 0) return;
    const auto now = Clock::now();
    if (first_token == Clock::time_point{}) first_token = now;
    last_token = now;
  }
};

// One request from parse to its summary; shared by the handler and the content
// provider that outlives it.
struct Call {
  HttpServer* server = nullptr;
  Endpoint endpoint = Endpoint::kCompletions;
  http::OpenAiRequest request;
  http::ResponseMeta meta;
  std::string peer;
  Clock::time_point start = Clock::now();
  std::shared_ptr<Exchange> exchange = std::make_shared<Exchange>();
  std::shared_ptr<GenerationHandle> handle;
  std::shared_ptr<void> in_flight;
  bool model_known = true;
  bool client_gone = false;
  int http_status = 200;
  bool recorded = false;
  int32_t echo_first_token = 0;  // the prompt's first token, for echo with logprobs

  bool chat() const { return endpoint == Endpoint::kChat; }

  void Cancel() {
    client_gone = true;
    if (handle) handle->Cancel();
  }

  http::TokenText TextOf() const {
    Engine* engine = server->engine();
    const std::string model = request.generate.model;
    return [engine, model](int32_t id) {
      absl::StatusOr<std::vector<std::string>> p = engine->TokenPieces(model, {id});
      return p.ok() ? std::move((*p)[0]) : std::string();
    };
  }

  // The request's metrics and log line, once, after the last engine callback.
  void Record(const absl::Status& status) {
    if (recorded) return;
    recorded = true;
    const Exchange& x = *exchange;
    RequestRecord record;
    record.model = model_known ? request.generate.model : "";
    // A client that went away is CANCELLED, as a cancelled gRPC call is.
    record.code = GrpcCodeName(client_gone && status.ok() ? grpc::StatusCode::CANCELLED
                                                          : ToGrpcStatus(status).error_code());
    record.duration_s = std::chrono::duration<double>(Clock::now() - start).count();
    if (x.first_token != Clock::time_point{}) {
      record.ttft_s = std::chrono::duration<double>(x.first_token - start).count();
      if (x.final.completion_tokens > 1) {
        record.tpot_s = std::chrono::duration<double>(x.last_token - x.first_token).count() /
                        (x.final.completion_tokens - 1);
      }
    }
    record.prompt_tokens = x.final.prompt_tokens;
    record.completion_tokens = x.final.completion_tokens;
    record.queue_s = x.final.queue_s;
    server->metrics()->RecordRequest(record);
    spdlog::info("http {} id={} model={} peer={} status={} code={} stream={} finish={} latency_ms={:.1f} "
                 "prompt_tokens={} completion_tokens={} decode_tps={:.1f}{}{}",
                 chat() ? "chat" : "completion", meta.id, request.generate.model, peer, http_status,
                 record.code, request.stream, FinishReasonName(x.final.finish_reason), record.duration_s * 1e3,
                 x.final.prompt_tokens, x.final.completion_tokens, x.final.decode_tokens_per_second,
                 status.ok() ? "" : " error=", std::string(status.message()));
  }
};

// Refused before generation: error object and status, counted as a finished request.
void Refuse(Call& call, httplib::Response& res, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kNotFound &&
      !call.server->engine()->GetModel(call.request.generate.model).ok()) {
    call.model_known = false;  // keeps metric label cardinality bounded
  }
  WriteError(res, status, call.chat());
  call.http_status = res.status;
  // Limits refusals are already counted by CheckGenerateLimits.
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    call.recorded = true;
    spdlog::info("http refused id={} model={} peer={} status={} reason={}", call.meta.id,
                 call.request.generate.model, call.peer, res.status, std::string(status.message()));
    return;
  }
  call.Record(status);
}

// A response that was being written ended (all of it, or the connection failed): a
// sequence still running is cancelled, and the request is recorded once the engine
// is done with it (at its next step).
void Finish(Call& call) {
  Exchange& x = *call.exchange;
  std::unique_lock lock(x.mu);
  if (!x.done && call.handle) {
    call.client_gone = true;
    call.handle->Cancel();
  }
  x.cv.wait(lock, [&] { return x.done; });
  const absl::Status status = x.status;
  lock.unlock();
  call.Record(status);
}

std::string SseEvent(const json& value) { return absl::StrCat("data: ", http::Dump(value), "\n\n"); }

// Streams: the role chunk(s), one event per engine chunk, the usage chunk, [DONE].
// Runs on the handler thread inside httplib's chunked writer; false ends the response.
bool StreamEvents(const std::shared_ptr<Call>& call, httplib::DataSink& sink) {
  Call& c = *call;
  Exchange& x = *c.exchange;
  const http::TokenText text_of = c.TextOf();
  auto write = [&](const std::string& data) {
    if (c.client_gone || sink.write(data.data(), data.size())) return !c.client_gone;
    c.Cancel();
    return false;
  };
  const int n = c.request.generate.sampling.n;
  // Echo: each completion's first event is the prompt (with its logprobs, which come
  // on completion 0's first chunk).
  std::vector<bool> echoed(n, !c.request.echo);
  std::vector<TokenLogprob> prompt_logprobs;
  auto echo = [&](const GenerationChunk& chunk) {
    if (!chunk.prompt_logprobs.empty()) prompt_logprobs = chunk.prompt_logprobs;
    if (chunk.index < 0 || chunk.index >= n || echoed[chunk.index]) return true;
    echoed[chunk.index] = true;
    GenerationChunk e;
    e.index = chunk.index;
    e.text = c.request.generate.prompt;
    if (c.request.logprobs) e.logprobs = http::EchoLogprobs(c.echo_first_token, prompt_logprobs);
    return write(SseEvent(http::StreamChunk(c.endpoint, c.meta, e, false, c.request.logprobs,
                                            c.request.include_usage, text_of)));
  };
  if (c.chat()) {
    for (int i = 0; i < n; ++i) {
      GenerationChunk role;
      role.index = i;
      if (!write(SseEvent(http::StreamChunk(c.endpoint, c.meta, role, /*first=*/true, false,
                                            c.request.include_usage, text_of)))) {
        break;
      }
    }
  }
  std::unique_lock lock(x.mu);
  while (!c.client_gone) {
    if (x.chunks.empty() && !x.done) {
      if (!x.cv.wait_for(lock, kPoll, [&] { return !x.chunks.empty() || x.done; })) {
        lock.unlock();
        // An SSE comment: ignored by clients, and the write finds a closed connection.
        const bool alive = write(": waiting\n\n");
        lock.lock();
        if (!alive) break;
      }
      continue;
    }
    if (!x.chunks.empty()) {
      GenerationChunk chunk = std::move(x.chunks.front());
      x.chunks.pop_front();
      lock.unlock();
      if (!echo(chunk)) {
        lock.lock();
        break;
      }
      // Tokens that end inside a character carry no text yet: nothing to send unless
      // their logprobs were asked for.
      if (chunk.text.empty() && chunk.finish_reason == FinishReason::kNone &&
          !(c.request.logprobs && !chunk.logprobs.empty())) {
        lock.lock();
        continue;
      }
      const bool ok = write(SseEvent(http::StreamChunk(c.endpoint, c.meta, chunk, false, c.request.logprobs,
                                                       c.request.include_usage, text_of)));
      lock.lock();
      if (!ok) break;
      continue;
    }
    // done, nothing queued
    absl::Status status = x.status;
    GenerationChunk final = x.final;
    lock.unlock();
    if (!status.ok()) {
      write(SseEvent(http::ToHttpError(status, c.endpoint).body));
    } else {
      if (n == 1) {  // the text and finish reason of the one completion
        GenerationChunk last = final;
        last.index = 0;
        echo(last);
        write(SseEvent(http::StreamChunk(c.endpoint, c.meta, last, false, c.request.logprobs,
                                         c.request.include_usage, text_of)));
      }
      if (c.request.include_usage) write(SseEvent(http::UsageChunk(c.endpoint, c.meta, final)));
    }
    write("data: [DONE]\n\n");
    if (!c.client_gone) sink.done();
    lock.lock();
    break;
  }
  return !c.client_gone;
}

// The whole answer, or the error, once the engine is done (with x.mu held).
void Assemble(Call& c, const Exchange& x, int* status, std::string* body) {
  if (!x.status.ok()) {
    http::HttpError e = http::ToHttpError(x.status, c.endpoint);
    *status = e.status;
    *body = http::Dump(e.body);
    return;
  }
  const int n = c.request.generate.sampling.n;
  std::vector<http::Choice> choices(n);
  std::vector<TokenLogprob> prompt_logprobs;  // completion 0's first chunk has them
  auto add = [&](const GenerationChunk& chunk) {
    if (!chunk.prompt_logprobs.empty()) prompt_logprobs = chunk.prompt_logprobs;
    if (chunk.index < 0 || chunk.index >= n) return;
    http::Choice& ch = choices[chunk.index];
    ch.text += chunk.text;
    ch.token_ids.insert(ch.token_ids.end(), chunk.token_ids.begin(), chunk.token_ids.end());
    ch.logprobs.insert(ch.logprobs.end(), chunk.logprobs.begin(), chunk.logprobs.end());
    if (chunk.finish_reason != FinishReason::kNone) ch.finish_reason = chunk.finish_reason;
  };
  for (const GenerationChunk& chunk : x.chunks) add(chunk);
  if (n == 1) add(x.final);
  if (c.request.echo) {
    const std::vector<TokenLogprob> echoed =
        c.request.logprobs ? http::EchoLogprobs(c.echo_first_token, prompt_logprobs) : std::vector<TokenLogprob>{};
    for (http::Choice& ch : choices) {
      ch.text = c.request.generate.prompt + ch.text;
      ch.logprobs.insert(ch.logprobs.begin(), echoed.begin(), echoed.end());
    }
  }
  *status = 200;
  *body = http::Dump(http::CompletionResponse(c.endpoint, c.meta, choices, x.final, c.request.logprobs,
                                              c.TextOf()));
}

}  // namespace

void HandleGenerate(HttpServer* server, bool chat, const httplib::Request& req, httplib::Response& res) {
  auto call = std::make_shared<Call>();
  Call& c = *call;
  c.server = server;
  c.in_flight = server->EnterRequest();
  c.endpoint = chat ? Endpoint::kChat : Endpoint::kCompletions;
  c.peer = absl::StrCat(req.remote_addr, ":", req.remote_port);
  const std::string request_id = server->NextRequestId();
  c.meta.id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", request_id);
  c.meta.created = static_cast<int64_t>(std::time(nullptr));
  res.set_header("x-request-id", request_id);  // as in the server's log line

  if (absl::Status s = AuthorizeHttp(server->guard(), req, "ingot.v1.GenerationService/Generate"); !s.ok()) {
    c.recorded = true;  // not a generation request yet: only the HTTP counter has it
    return WriteError(res, s, chat);
  }
  absl::StatusOr<http::OpenAiRequest> parsed = http::ParseRequest(c.endpoint, req.body);
  if (!parsed.ok()) {
    c.model_known = false;
    return Refuse(c, res, parsed.status());
  }
  c.request = *std::move(parsed);
  GenerateRequest& g = c.request.generate;
  g.request_id = request_id;
  c.meta.model = g.model;
  if (CallGuard* guard = server->guard()) {
    if (absl::Status s = guard->EnsureModel(g.model); !s.ok()) return Refuse(c, res, s);
    std::vector<std::string> texts;
    for (const ChatMessage& m : g.messages) texts.push_back(m.content);
    if (absl::Status s = guard->CheckGenerateLimits(g.model, g.sampling.max_tokens, g.prompt, texts); !s.ok()) {
      return Refuse(c, res, s);
    }
  }
  if (c.request.echo && c.request.logprobs) {
    absl::StatusOr<TokenizeResult> ids = server->engine()->Tokenize(g.model, g.prompt, true, true);
    if (!ids.ok()) return Refuse(c, res, ids.status());
    if (!ids->ids.empty()) c.echo_first_token = ids->ids[0];
  }

  std::shared_ptr<Exchange> x = c.exchange;
  GenerationCallbacks callbacks;
  callbacks.on_chunk = [x](GenerationChunk chunk) {
    std::lock_guard lock(x->mu);
    x->Note(chunk.token_ids.size());
    if (chunk.text.empty() && chunk.token_ids.empty() && chunk.finish_reason == FinishReason::kNone) return;
    x->chunks.push_back(std::move(chunk));
    x->cv.notify_all();
  };
  callbacks.on_done = [x](absl::Status status, GenerationChunk chunk) {
    std::lock_guard lock(x->mu);
    x->Note(chunk.token_ids.size());
    x->status = std::move(status);
    x->final = std::move(chunk);
    x->done = true;
    x->cv.notify_all();
  };
  absl::StatusOr<std::shared_ptr<GenerationHandle>> handle =
      server->engine()->Generate(g, std::move(callbacks));
  if (!handle.ok()) {
    absl::Status status = handle.status();
    // What the engine's constraint compiler refuses (engine/runtime/constraint.cc says
    // "grammar: ..." or "JSON Schema ...") is the response_format's fault.
    if (status.code() == absl::StatusCode::kInvalidArgument &&
        g.sampling.constraint.kind != OutputConstraint::Kind::kNone &&
        (absl::StartsWith(status.message(), "grammar:") || absl::StartsWith(status.message(), "JSON Schema"))) {
      status = http::WithParam(std::move(status), "response_format");
    }
    return Refuse(c, res, status);
  }
  c.handle = *std::move(handle);

  if (c.request.stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");  // proxies: do not hold the events back
    res.set_chunked_content_provider(
        "text/event-stream",
        [call](size_t, httplib::DataSink& sink) { return StreamEvents(call, sink); },
        [call](bool) { Finish(*call); });
    return;
  }

  // Whole answer: a quick one is sent as is; a longer one goes chunked, a space a second.
  std::unique_lock lock(x->mu);
  if (x->cv.wait_for(lock, kPoll, [&] { return x->done; })) {
    int status = 200;
    std::string body;
    Assemble(c, *x, &status, &body);
    const absl::Status engine_status = x->status;
    lock.unlock();
    res.status = status;
    res.set_content(body, "application/json");
    c.http_status = status;
    c.Record(engine_status);
    return;
  }
  lock.unlock();
  res.set_chunked_content_provider(
      "application/json",
      [call](size_t, httplib::DataSink& sink) {
        Exchange& ex = *call->exchange;
        std::unique_lock lock(ex.mu);
        while (!ex.cv.wait_for(lock, kPoll, [&] { return ex.done; })) {
          lock.unlock();
          const bool alive = sink.write(" ", 1);
          lock.lock();
          if (!alive) {
            call->Cancel();
            return false;
          }
        }
        int status = 200;
        std::string body;
        Assemble(*call, ex, &status, &body);
        lock.unlock();
        call->http_status = status;  // for the log: the response itself went out as 200
        if (!sink.write(body.data(), body.size())) {
          call->Cancel();
          return false;
        }
        sink.done();
        return true;
      },
      [call](bool) { Finish(*call); });
}

}  // namespace ingot::server
