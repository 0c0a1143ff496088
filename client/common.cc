#include <chrono>
#include <cstdio>
#include <iostream>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/client.h"
#include "server/status.h"

namespace ingot::client {

std::string ReadFlagFile(const char* flag, const std::string& path, std::string* out) {
  if (path.empty()) return "";
  absl::StatusOr<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) return absl::StrCat(flag, ": ", bytes.status().message());
  *out = *std::move(bytes);
  return "";
}

std::string Connection::Connect() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!tls_ca.empty() || !tls_cert.empty()) {
    grpc::SslCredentialsOptions ssl;
    std::string problem = ReadFlagFile("--tls-ca", tls_ca, &ssl.pem_root_certs);
    if (problem.empty()) problem = ReadFlagFile("--tls-cert", tls_cert, &ssl.pem_cert_chain);
    if (problem.empty()) problem = ReadFlagFile("--tls-key", tls_key, &ssl.pem_private_key);
    if (!problem.empty()) return problem;
    if (ssl.pem_cert_chain.empty() != ssl.pem_private_key.empty()) return "--tls-cert and --tls-key go together";
    creds = grpc::SslCredentials(ssl);
  }
  channel = grpc::CreateCustomChannel(server, creds, args);
  return "";
}

std::unique_ptr<grpc::ClientContext> Connection::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
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
  if (presence_penalty) request->set_presence_penalty(*presence_penalty);
  if (frequency_penalty) request->set_frequency_penalty(*frequency_penalty);
  for (const auto& [id, bias] : logit_bias) (*request->mutable_logit_bias())[id] = bias;
  for (int32_t id : stop_token_ids) request->add_stop_token_ids(id);
  if (completions > 1) request->set_n(completions);
  if (has_grammar) request->set_grammar(grammar);
  if (has_json_schema) request->set_json_schema(json_schema);
  if (json_object) request->set_json_object(true);
  if (logprobs >= 0) {
    request->set_logprobs(true);
    request->set_top_logprobs(logprobs);
  }
  if (prompt_logprobs >= 0) request->set_prompt_logprobs(prompt_logprobs);
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
