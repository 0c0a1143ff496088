// Chat templates: the model's own tokenizer.chat_template (a Jinja2 template, as HF
// transformers renders it) interpreted by a small Jinja subset that covers the
// templates models ship (ChatML/SmolLM, Llama 2/3, Mistral, Qwen2, Zephyr, Gemma, Phi).
//
// Rendering matches jinja2 under transformers' settings (trim_blocks, lstrip_blocks,
// loopcontrols, its tojson, raise_exception, strftime_now; tools and documents are
// none): tests/data/chat holds jinja2's output for the model templates and for each
// construct. Supported: text, {{ }}, {% %} with -/+ whitespace control, comments, raw;
// if/elif/else, for (targets unpacking, `if` filter, else, loop.*, break/continue), set
// (incl. namespace attributes and block set), macros, {% generation %}; Python
// literals, operators, subscripts and slices, filters, tests and str/dict methods
// (see chat_template_builtins.cc and chat_template_methods.cc).
// Not supported, reported as INVALID_ARGUMENT naming the construct and its offset:
// include/import/extends/block/call/filter/with tags, recursive loops, unknown filters
// and tests, *args, printf-style '%' on strings. Deliberate differences: ints are 64-bit
// (overflow is an error), case mapping covers Latin, Greek, Cyrillic and fullwidth
// letters only, and rendering is bounded in output size, work and recursion.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ingot {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", ...
  std::string content;
};

struct ChatTemplateOptions {
  bool add_generation_prompt = true;
  std::string bos_token;  // exposed to the template as bos_token
  std::string eos_token;  // exposed as eos_token
  // strftime_now's clock, seconds since the epoch read as UTC (tests fix it; SmolLM3's
  // template prints today's date); -1 = the system clock.
  int64_t now_unix_seconds = -1;
};

// Renders `tmpl` for `messages`. INVALID_ARGUMENT naming the construct (and its
// position) when the template uses something the interpreter does not support, or
// when the template itself raises an error (raise_exception).
absl::StatusOr<std::string> ApplyChatTemplate(std::string_view tmpl,
                                              const std::vector<ChatMessage>& messages,
                                              const ChatTemplateOptions& options);

}  // namespace ingot
