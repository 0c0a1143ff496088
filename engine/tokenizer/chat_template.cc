#include "engine/tokenizer/chat_template.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/tokenizer/chat_template_ast.h"
#include "engine/tokenizer/chat_template_eval.h"

namespace ingot {

absl::StatusOr<std::string> ApplyChatTemplate(std::string_view tmpl,
                                              const std::vector<ChatMessage>& messages,
                                              const ChatTemplateOptions& options) {
  auto render = [&]() -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(jinja::Body body, jinja::ParseTemplate(tmpl));
    jinja::ValueList list;
    list.reserve(messages.size());
    for (const ChatMessage& m : messages) {
      jinja::Dict d;
      d.items.emplace_back(jinja::Value::String("role"), jinja::Value::String(m.role));
      d.items.emplace_back(jinja::Value::String("content"), jinja::Value::String(m.content));
      list.push_back(jinja::Value::MakeDict(std::move(d)));
    }
    // The context transformers' apply_chat_template renders with; it passes tools and
    // documents as None when there are none, which `tools is not none` tests see.
    std::vector<std::pair<std::string, jinja::Value>> globals;
    globals.emplace_back("messages", jinja::Value::List(std::move(list)));
    globals.emplace_back("add_generation_prompt", jinja::Value::Bool(options.add_generation_prompt));
    globals.emplace_back("bos_token", jinja::Value::String(options.bos_token));
    globals.emplace_back("eos_token", jinja::Value::String(options.eos_token));
    globals.emplace_back("tools", jinja::Value::None());
    globals.emplace_back("documents", jinja::Value::None());
    jinja::Renderer renderer(std::move(globals));
    renderer.set_now(options.now_unix_seconds);
    return renderer.Render(body);
  };
  absl::StatusOr<std::string> out = CatchExceptions("chat template", render);
  if (!out.ok()) {
    return absl::Status(out.status().code(), absl::StrCat("chat template: ", out.status().message()));
  }
  return out;
}

}  // namespace ingot
