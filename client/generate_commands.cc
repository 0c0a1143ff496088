// generate (one request, streamed) and chat (an interactive conversation).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>

#include "absl/strings/str_format.h"
#include "client/client.h"

namespace ingot::client {
namespace {

const char* FinishName(v1::FinishReason r) {
  switch (r) {
    case v1::FINISH_REASON_LENGTH: return "length";
    case v1::FINISH_REASON_STOP: return "stop";
    case v1::FINISH_REASON_EOS: return "eos";
    case v1::FINISH_REASON_CANCELLED: return "cancelled";
    case v1::FINISH_REASON_GRAMMAR_DEAD_END: return "grammar_dead_end";
    default: return "none";
  }
}

struct StreamResult {
  grpc::Status status;
  std::string text;
  v1::GenerateResponse last;
};

// Runs one Generate call; text goes to stdout as it arrives (or JSON lines). Several
// completions (n > 1) are printed one after another once the stream ends.
StreamResult Stream(Connection& conn, const v1::GenerateRequest& request, bool json) {
  auto stub = v1::GenerationService::NewStub(conn.channel);
  auto context = conn.NewContext();
  auto reader = stub->Generate(context.get(), request);
  StreamResult result;
  const bool several = request.n() > 1;
  std::vector<std::string> texts(several ? request.n() : 0);
  std::vector<v1::FinishReason> finish(texts.size(), v1::FINISH_REASON_UNSPECIFIED);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (json) {
      PrintJsonLine(response);
    } else if (several) {
      const size_t i = static_cast<size_t>(response.index());
      if (i < texts.size()) {
        texts[i] += response.text();
        if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) finish[i] = response.finish_reason();
      }
    } else if (!response.text().empty()) {
      std::fwrite(response.text().data(), 1, response.text().size(), stdout);
      std::fflush(stdout);
    }
    result.text += response.text();
    result.last = response;
  }
  result.status = reader->Finish();
  for (size_t i = 0; i < texts.size(); ++i) {
    std::printf("%s[completion %zu, finish=%s]\n%s\n", i == 0 ? "" : "\n", i, FinishName(finish[i]),
                texts[i].c_str());
  }
  return result;
}

void PrintStats(const v1::GenerateResponse& last) {
  const v1::Usage& u = last.usage();
  const v1::Timings& t = last.timings();
  std::fprintf(stderr,
               "[%s] finish=%s prompt=%d completion=%d ttft=%.1f ms prefill=%.1f tok/s "
               "decode=%.1f tok/s total=%.2f s\n",
               last.request_id().c_str(), FinishName(last.finish_reason()), u.prompt_tokens(),
               u.completion_tokens(), t.time_to_first_token_seconds() * 1e3,
               t.prefill_tokens_per_second(), t.decode_tokens_per_second(), t.total_seconds());
}

}  // namespace

int RunGenerate(Connection& conn, const GenerateFlags& flags) {
  std::string prompt = flags.prompt;
  if (prompt == "-") {
    prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  v1::GenerateRequest request;
  request.set_model(flags.model);
  if (flags.chat || !flags.system.empty()) {
    if (!flags.system.empty()) {
      v1::ChatMessage* m = request.add_messages();
      m->set_role("system");
      m->set_content(flags.system);
    }
    v1::ChatMessage* m = request.add_messages();
    m->set_role("user");
    m->set_content(prompt);
  } else {
    request.set_prompt(prompt);
  }
  flags.sampling.ApplyTo(&request);
  StreamResult result = Stream(conn, request, flags.json);
  if (!flags.json && !result.text.empty() && result.text.back() != '\n') std::cout << '\n';
  std::cout << std::flush;
  if (!result.status.ok()) return ReportError(result.status);
  if (flags.stats) PrintStats(result.last);
  return 0;
}

int RunChat(Connection& conn, const GenerateFlags& flags) {
  const bool tty = isatty(STDIN_FILENO);
  std::vector<v1::ChatMessage> history;
  if (!flags.system.empty()) {
    v1::ChatMessage m;
    m.set_role("system");
    m.set_content(flags.system);
    history.push_back(m);
  }
  if (tty) std::fprintf(stderr, "chat with %s; /reset clears the conversation, /exit quits\n",
                        flags.model.c_str());
  int rc = 0;
  std::string line;
  while (true) {
    if (tty) std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      history.resize(flags.system.empty() ? 0 : 1);
      continue;
    }
    if (line.empty()) continue;
    v1::GenerateRequest request;
    request.set_model(flags.model);
    for (const v1::ChatMessage& m : history) *request.add_messages() = m;
    v1::ChatMessage* user = request.add_messages();
    user->set_role("user");
    user->set_content(line);
    flags.sampling.ApplyTo(&request);
    StreamResult result = Stream(conn, request, flags.json);
    if (!flags.json) std::cout << '\n' << std::flush;
    if (!result.status.ok()) {
      rc = ReportError(result.status);  // keep the conversation as it was
      continue;
    }
    rc = 0;
    if (flags.stats) PrintStats(result.last);
    history.push_back(*user);
    v1::ChatMessage assistant;
    assistant.set_role("assistant");
    assistant.set_content(result.text);
    history.push_back(assistant);
  }
  return rc;
}

}  // namespace ingot::client
