// A request that does not parse (garbage bytes, invalid UTF-8 in a string field) must
// be INVALID_ARGUMENT saying so. gRPC 1.51's callback handlers answer a failed parse
// themselves, with UNIMPLEMENTED and an empty message (CallbackUnaryHandler::RunHandler
// and CallbackServerStreamingHandler build an UnimplementedUnaryReactor /
// UnimplementedWriteReactor), and offer no hook to choose the status; a generic
// service only sees methods no typed service registered.
//
// So, for ingot.v1's request types only, the parse itself never fails at gRPC's level:
// this explicit specialization of grpc::SerializationTraits hands the handler an
// empty request carrying one unknown field, kUnparseableField, whose bytes are the
// parser's reason; every handler's Admit (server/limits.h) answers such a request
// INVALID_ARGUMENT "the request could not be parsed: ...". Responses and every other
// type keep gRPC's own traits.
//
// Force-included into every translation unit that links ingot_proto
// (proto/CMakeLists.txt): an explicit specialization must be seen before any use.
#pragma once

#include <string>

#include <grpcpp/impl/codegen/proto_utils.h>

#include "ingot/v1/generation.pb.h"
#include "ingot/v1/model.pb.h"
#include "ingot/v1/quantization.pb.h"

namespace ingot::v1 {

// The largest field number protobuf allows: no ingot.v1 message will ever use it.
inline constexpr int kUnparseableField = 536870911;

// The parser's reason when `request` did not parse (marked as above), else "".
inline std::string UnparseableReason(const google::protobuf::Message& request) {
  const google::protobuf::UnknownFieldSet& unknown =
      request.GetReflection()->GetUnknownFields(request);
  for (int i = 0; i < unknown.field_count(); ++i) {
    const google::protobuf::UnknownField& f = unknown.field(i);
    if (f.number() == kUnparseableField &&
        f.type() == google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      return f.length_delimited().empty() ? "not a valid protobuf message" : f.length_delimited();
    }
  }
  return "";
}

}  // namespace ingot::v1

#define INGOT_MARK_UNPARSEABLE_REQUESTS(T)                                                    \
  template <>                                                                                 \
  class SerializationTraits<T, void> {                                                        \
   public:                                                                                    \
    static grpc::Status Serialize(const grpc::protobuf::MessageLite& msg, grpc::ByteBuffer* bb, \
                                  bool* own_buffer) {                                         \
      return grpc::GenericSerialize<grpc::ProtoBufferWriter, T>(msg, bb, own_buffer);         \
    }                                                                                         \
    static grpc::Status Deserialize(grpc::ByteBuffer* buffer, grpc::protobuf::MessageLite* msg) { \
      grpc::Status s = grpc::GenericDeserialize<grpc::ProtoBufferReader, T>(buffer, msg);     \
      if (s.ok()) return s;                                                                   \
      auto* m = static_cast<T*>(msg);                                                         \
      m->Clear();                                                                             \
      m->GetReflection()->MutableUnknownFields(m)->AddLengthDelimited(                        \
          ::ingot::v1::kUnparseableField, s.error_message());                                 \
      return grpc::Status::OK;                                                                \
    }                                                                                         \
  }

namespace grpc {
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::LoadModelRequest);
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::UnloadModelRequest);
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::SaveModelRequest);
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::ListModelsRequest);
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::GetModelRequest);
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::GetServerInfoRequest);
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::GenerateRequest);
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::TokenizeRequest);
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::QuantizeModelRequest);
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::ValidateQuantizationRequest);
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::RecommendQuantizationRequest);
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::EvaluateModelRequest);
INGOT_MARK_UNPARSEABLE_REQUESTS(::ingot::v1::ListQuantizationMethodsRequest);
}  // namespace grpc

#undef INGOT_MARK_UNPARSEABLE_REQUESTS
