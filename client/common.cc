#include <chrono>
#include <cstdio>
#include <iostream>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_format.h"
#include "client/client.h"
#include "server/status.h"

namespace ingot::client {

void Connection::Connect() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  channel = grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(), args);
}

std::unique_ptr<grpc::ClientContext> Connection::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (timeout_s > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::duration_cast<std::chrono::system_clock::duration>(
                              std::chrono::duration<double>(timeout_s)));
  }
  return context;
}

void SamplingFlags::ApplyTo(v1::GenerateRequest* request) const {
  if (max_tokens) request->set_max_tokens(*max_tokens);
  if (temperature) request->set_temperature(*temperature);
  if (top_k) request->set_top_k(*top_k);
  if (top_p) request->set_top_p(*top_p);
  if (min_p) request->set_min_p(*min_p);
  if (repetition_penalty) request->set_repetition_penalty(*repetition_penalty);
  if (seed) request->set_seed(*seed);
  for (const std::string& s : stop) request->add_stop(s);
}

int ReportError(const grpc::Status& status) {
  std::fflush(stdout);
  std::fprintf(stderr, "error: %s: %s\n", server::GrpcCodeName(status.error_code()),
               status.error_message().c_str());
  return 1;
}

void PrintJsonLine(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  std::cout << out << '\n' << std::flush;
}

std::string HumanBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) { v /= 1024; ++u; }
  return u == 0 ? absl::StrFormat("%d B", bytes) : absl::StrFormat("%.1f %s", v, units[u]);
}

}  // namespace ingot::client
