// Proto <-> engine structs, in one file. Requests are validated on the way in
// (INVALID_ARGUMENT naming the field); responses cannot fail.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/runtime/engine.h"
#include "ingot/v1/generation.pb.h"
#include "ingot/v1/model.pb.h"
#include "ingot/v1/quantization.pb.h"

namespace ingot::server {

// name: 1-128 characters of [A-Za-z0-9._:-] (it is also a health service name and a
// metric label value); source non-empty. Format and device are the engine's to judge.
absl::StatusOr<LoadRequest> FromProto(const v1::LoadModelRequest& request);

// Exactly one of prompt/messages; sampling fields left unset keep SamplingParams'
// defaults; the result passes ValidateSamplingParams.
absl::StatusOr<GenerateRequest> FromProto(const v1::GenerateRequest& request);

void ToProto(const ModelInfo& info, v1::ModelInfo* out);
void ToProto(const DeviceInfo& info, v1::DeviceInfo* out);
void ToProto(const LoadProgress& progress, v1::LoadProgress* out);
void ToProto(const ModelEvent& event, v1::ModelEvent* out);
void ToProto(const LoadPlan& plan, v1::PlanLoadResponse* out);
v1::ModelState ToProto(ModelState state);
v1::FinishReason ToProto(FinishReason reason);
// Text and token ids; for the final chunk also finish reason, usage and timings.
void ToProto(const GenerationChunk& chunk, v1::GenerateResponse* out);
void ToProto(const TokenizeResult& result, v1::TokenizeResponse* out);

// Field-level checks only (names, ranges); the method table judges the rest.
absl::StatusOr<quant::QuantizationConfig> FromProto(const v1::QuantizationConfig& config);
void ToProto(const quant::QuantizationConfig& config, v1::QuantizationConfig* out);
void ToProto(const quant::MethodRow& row, v1::QuantizationMethodInfo* out);
void ToProto(const quant::ConfigProblem& problem, v1::ConfigProblem* out);
void ToProto(const quant::QuantizeProgress& progress, v1::QuantizeProgress* out);
void ToProto(const EvaluateResult& result, v1::EvaluateModelResponse* out);

// Replaces each byte that is not part of a well-formed UTF-8 sequence with U+FFFD:
// proto3 strings must be UTF-8 or the peer fails to parse the message.
std::string SanitizeUtf8(std::string_view text);

}  // namespace ingot::server
