// libFuzzer target: the GBNF parser and the JSON Schema converter on arbitrary text,
// then the matcher on the same bytes. The first byte picks the mode (even: GBNF, odd:
// JSON Schema); a grammar that compiles is walked byte by byte and asked for CanEnd.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/grammar/gbnf.h"
#include "engine/grammar/json_schema.h"
#include "engine/grammar/matcher.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ingot::grammar;
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string gbnf = text;
  if (data[0] & 1) {
    auto converted = JsonSchemaToGbnf(text);
    if (!converted.ok()) return 0;
    gbnf = *converted;
  }
  auto g = ParseGbnf(gbnf);
  if (!g.ok()) return 0;
  // Printing back must parse again.
  if (!ParseGbnf(ToGbnf(**g)).ok()) __builtin_trap();
  Automaton a(*g);
  int32_t s = a.Start();
  for (size_t i = 0; i < text.size() && i < 256 && s != Automaton::kDead; ++i) {
    s = a.Next(s, static_cast<uint8_t>(text[i]));
  }
  if (s != Automaton::kDead) (void)a.CanEnd(s);
  return 0;
}
