// Cost of constrained decoding without the model: builds the vocabulary trie of a GGUF
// model's tokenizer, then replays a text that the constraint accepts token by token
// (as the scheduler does: mask the row, pick the token, advance) and times each step's
// mask, first cold (every state new) and then warm (the same request again, as the
// request's other completions would). Usage:
//   grammar_bench MODEL.gguf (--json-schema FILE | --grammar FILE | --json-object) TEXT_FILE
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/formats/gguf.h"
#include "engine/runtime/constraint.h"
#include "engine/tokenizer/tokenizer.h"

namespace {
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
std::string Slurp(const char* path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  using namespace ingot;
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL.gguf (--json-schema FILE | --grammar FILE | --json-object) TEXT_FILE\n",
                 argv[0]);
    return 2;
  }
  OutputConstraint c;
  int next = 3;
  if (!std::strcmp(argv[2], "--json-object")) {
    c.kind = OutputConstraint::Kind::kJsonObject;
  } else {
    c.kind = !std::strcmp(argv[2], "--grammar") ? OutputConstraint::Kind::kGrammar : OutputConstraint::Kind::kJsonSchema;
    c.text = Slurp(argv[3]);
    next = 4;
  }
  if (next >= argc) return 2;
  const std::string text = Slurp(argv[next]);
  auto file = gguf::File::Open(argv[1]);
  if (!file.ok()) return std::fprintf(stderr, "%s\n", file.status().ToString().c_str()), 1;
  auto spec = VocabSpecFromGguf(**file);
  if (!spec.ok()) return std::fprintf(stderr, "%s\n", spec.status().ToString().c_str()), 1;
  auto tok = Tokenizer::Create(*spec);
  if (!tok.ok()) return std::fprintf(stderr, "%s\n", tok.status().ToString().c_str()), 1;
  auto grammar = CompileConstraint(c);
  if (!grammar.ok()) return std::fprintf(stderr, "%s\n", grammar.status().ToString().c_str()), 1;

  double t0 = Now();
  auto trie = BuildTokenTrie(**tok);
  std::printf("trie: %d tokens, %zu nodes, built in %.1f ms\n", trie->vocab_size(), trie->nodes().size(),
              (Now() - t0) * 1e3);
  const std::vector<int32_t> ids = (*tok)->Encode(text, false, false);
  grammar::Automaton automaton(*grammar);
  std::vector<float> logits(static_cast<size_t>(trie->vocab_size()));
  for (const char* pass : {"cold", "warm"}) {
    std::vector<double> step_ms;
    int32_t state = automaton.Start();
    for (int32_t id : ids) {
      std::fill(logits.begin(), logits.end(), 0.0f);
      const double a = Now();
      const bool any = automaton.Apply(state, *trie, absl::MakeSpan(logits));
      step_ms.push_back((Now() - a) * 1e3);
      if (!any || std::isinf(logits[id])) {
        std::fprintf(stderr, "token %d ('%s') refused after %zu steps\n", id, trie->bytes(id).c_str(), step_ms.size());
        return 1;
      }
      state = automaton.Walk(state, trie->bytes(id));
    }
    double total = 0;
    for (double v : step_ms) total += v;
    std::printf("%s: %zu steps, mask median %.3f ms, max %.3f ms, mean %.3f ms; %zu states; can end: %s\n", pass,
                step_ms.size(), Median(step_ms), *std::max_element(step_ms.begin(), step_ms.end()),
                total / step_ms.size(), automaton.states(), automaton.CanEnd(state) ? "yes" : "no");
  }
  return 0;
}
