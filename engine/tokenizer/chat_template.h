// Chat templates: the model's own tokenizer.chat_template (a Jinja2 template, as HF
// transformers renders it) interpreted by a small Jinja subset that covers the
// templates models ship (ChatML/SmolLM, Llama 2/3, Mistral, Qwen2, Zephyr, Gemma, Phi).
#pragma once

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
};

// Renders `tmpl` for `messages`. INVALID_ARGUMENT naming the construct (and its
// position) when the template uses something the interpreter does not support, or
// when the template itself raises an error (raise_exception).
absl::StatusOr<std::string> ApplyChatTemplate(std::string_view tmpl,
                                              const std::vector<ChatMessage>& messages,
                                              const ChatTemplateOptions& options);

}  // namespace ingot
