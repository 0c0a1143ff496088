#include "server/generation_service.h"

#include <chrono>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/convert.h"
#include "server/limits.h"
#include "server/status.h"
#include "server/stream_writer.h"
#include "spdlog/spdlog.h"

namespace ingot::server {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// One Generate call. The engine's callbacks (its scheduler thread) push responses;
// gRPC threads write them. The engine calls on_done exactly once and nothing after
// it, and only on_done closes the stream once generation started, so the reactor
// outlives every engine callback.
class GenerateReactor final : public QueuedWriter<v1::GenerateResponse> {
 public:
  GenerateReactor(GenerationServiceImpl* service, grpc::CallbackServerContext* context,
                  const v1::GenerateRequest& request)
      : service_(service), context_(context), start_(Clock::now()) {
    request_id_ = request.request_id().empty() ? service->NextRequestId()
                                               : request.request_id();
    model_ = request.model();
    absl::StatusOr<GenerateRequest> converted = FromProto(request);
    if (!converted.ok()) {
      FailEarly(converted.status());
      return;
    }
    converted->request_id = request_id_;
    GenerationCallbacks callbacks;
    callbacks.on_chunk = [this](GenerationChunk chunk) { OnEngineChunk(std::move(chunk)); };
    callbacks.on_done = [this](absl::Status status, GenerationChunk chunk) {
      OnEngineDone(std::move(status), std::move(chunk));
    };
    absl::StatusOr<std::shared_ptr<GenerationHandle>> handle =
        service_->engine()->Generate(*std::move(converted), std::move(callbacks));
    if (!handle.ok()) {
      FailEarly(handle.status());
      return;
    }
    std::lock_guard lock(mu_);
    handle_ = *std::move(handle);
    if (cancel_requested_) handle_->Cancel();
  }

  void OnCancel() override { CancelGeneration(); }

 private:
  // The request never reached the scheduler: no engine callback will come.
  void FailEarly(const absl::Status& status) {
    if (status.code() == absl::StatusCode::kNotFound && !service_->engine()->GetModel(model_).ok()) {
      model_known_ = false;  // keep metric label cardinality bounded
    }
    Close(ToGrpcStatus(status));
  }

  void CancelGeneration() {
    std::lock_guard lock(mu_);
    cancel_requested_ = true;
    if (handle_) handle_->Cancel();
  }

  void OnStreamBroken() override { CancelGeneration(); }

  void NoteTokens(size_t n) {
    if (n == 0) return;
    auto now = Clock::now();
    if (first_token_ == Clock::time_point{}) first_token_ = now;
    last_token_ = now;
  }

  void OnEngineChunk(GenerationChunk chunk) {
    NoteTokens(chunk.token_ids.size());
    if (chunk.text.empty() && chunk.token_ids.empty()) return;
    v1::GenerateResponse response;
    ToProto(chunk, &response);
    Push(std::move(response));
  }

  void OnEngineDone(absl::Status status, GenerationChunk chunk) {
    NoteTokens(chunk.token_ids.size());
    if (!status.ok()) {
      Close(ToGrpcStatus(status));
      return;
    }
    prompt_tokens_ = chunk.prompt_tokens;
    completion_tokens_ = chunk.completion_tokens;
    finish_reason_ = chunk.finish_reason;
    decode_tps_ = chunk.decode_tokens_per_second;
    queue_s_ = chunk.queue_s;
    chunk.final = true;
    v1::GenerateResponse response;
    ToProto(chunk, &response);
    response.set_request_id(request_id_);
    Push(std::move(response));
    // A call the client cancelled ends CANCELLED, one past its deadline
    // DEADLINE_EXCEEDED (as the client sees it, and so counted); one cancelled by
    // unload or shutdown ends OK with finish_reason CANCELLED.
    // The client gives up at its deadline, a moment before the server's own copy of it
    // (transit, and grpc-timeout rounds up): a cancel that close is the deadline.
    constexpr auto kDeadlineSlack = std::chrono::milliseconds(250);
    if (!context_->IsCancelled()) {
      Close(grpc::Status::OK);
    } else if (std::chrono::system_clock::now() + kDeadlineSlack >= context_->deadline()) {
      Close(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded"));
    } else {
      Close(grpc::Status::CANCELLED);
    }
  }

  void BeforeFinish(const grpc::Status& status) override {
    RequestRecord record;
    record.model = model_known_ ? model_ : "";
    record.code = GrpcCodeName(status.error_code());
    record.duration_s = SecondsSince(start_);
    if (first_token_ != Clock::time_point{}) {
      record.ttft_s = std::chrono::duration<double>(first_token_ - start_).count();
      if (completion_tokens_ > 1) {
        record.tpot_s = std::chrono::duration<double>(last_token_ - first_token_).count() /
                        (completion_tokens_ - 1);
      }
    }
    record.prompt_tokens = prompt_tokens_;
    record.completion_tokens = completion_tokens_;
    record.queue_s = queue_s_;
    service_->metrics()->RecordRequest(record);
    spdlog::info(
        "generate id={} model={} peer={} code={} finish={} latency_ms={:.1f} ttft_ms={:.1f} "
        "prompt_tokens={} completion_tokens={} decode_tps={:.1f}{}{}",
        request_id_, model_, context_->peer(), record.code, FinishReasonName(finish_reason_),
        record.duration_s * 1e3, record.ttft_s >= 0 ? record.ttft_s * 1e3 : 0.0,
        prompt_tokens_, completion_tokens_, decode_tps_,
        status.ok() ? "" : " error=", status.error_message());
  }

  GenerationServiceImpl* service_;
  grpc::CallbackServerContext* context_;
  const Clock::time_point start_;
  std::string request_id_;
  std::string model_;
  bool model_known_ = true;

  std::mutex mu_;  // guards handle_ and cancel_requested_
  std::shared_ptr<GenerationHandle> handle_;
  bool cancel_requested_ = false;

  // Written by engine callbacks, read in BeforeFinish, which runs after on_done.
  Clock::time_point first_token_{};
  Clock::time_point last_token_{};
  int64_t prompt_tokens_ = 0;
  int64_t completion_tokens_ = 0;
  FinishReason finish_reason_ = FinishReason::kNone;
  double decode_tps_ = 0;
  double queue_s_ = -1;
};

}  // namespace

std::string GenerationServiceImpl::NextRequestId() {
  static const int64_t kStart = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::system_clock::now().time_since_epoch()).count();
  return absl::StrFormat("g-%x-%d", kStart, next_id_.fetch_add(1));
}

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerationServiceImpl::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  if (grpc::Status s = Admit(context, *request); !s.ok())
    return RefuseStream<v1::GenerateResponse>(s);
  return new GenerateReactor(this, context, *request);
}

grpc::ServerUnaryReactor* GenerationServiceImpl::Tokenize(
    grpc::CallbackServerContext* context, const v1::TokenizeRequest* request,
    v1::TokenizeResponse* response) {
  if (grpc::Status s = Admit(context, *request); !s.ok()) return RefuseUnary(context, s);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (request->model().empty()) {
    reactor->Finish(ToGrpcStatus(absl::InvalidArgumentError("model: required")));
    return reactor;
  }
  // Tokenizing is microseconds per KB of text: done on the gRPC thread.
  absl::StatusOr<TokenizeResult> result = engine_->Tokenize(
      request->model(), request->text(),
      request->has_add_special() ? request->add_special() : true,
      request->has_parse_special() ? request->parse_special() : true);
  if (result.ok()) ToProto(*result, response);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

}  // namespace ingot::server
