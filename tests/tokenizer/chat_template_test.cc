// Chat templates against jinja2 (tests/reference/gen_chat.py, set up as transformers'
// apply_chat_template sets it up): every model template in tests/data/chat/templates/
// over every conversation, with and without the generation prompt, plus one small
// template per construct; then errors (unsupported constructs, malformed templates,
// raise_exception) and the limits that keep a hostile template from crashing the server.
#include "engine/tokenizer/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/formats/gguf.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ingot {
namespace {

using ::ingot::testing::DefaultModelPath;
using ::ingot::testing::SourcePath;
using ::ingot::testing::StatusIs;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string TemplateFile(const std::string& name) {
  return ReadFile(SourcePath("tests/data/chat/templates/" + name + ".jinja"));
}

struct GoldenCase {
  std::string name;
  std::string tmpl;
  std::vector<ChatMessage> messages;
  ChatTemplateOptions options;
  bool expect_error = false;
  std::string expected;       // the rendering, or jinja2's error message
  std::string error_class;    // jinja2's exception class
};

// gtest prints a parameter on failure; the case name says more than its bytes.
void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.name; }

std::vector<GoldenCase> LoadGoldenCases() {
  std::ifstream in(SourcePath("tests/data/chat/cases.json"));
  if (!in) return {};
  const nlohmann::json root = nlohmann::json::parse(in);
  std::vector<GoldenCase> cases;
  for (const auto& c : root["cases"]) {
    GoldenCase g;
    g.name = c["name"];
    g.tmpl = c.contains("template") ? TemplateFile(c["template"]) : c["template_text"].get<std::string>();
    for (const auto& m : c["messages"]) g.messages.push_back({m["role"], m["content"]});
    g.options.add_generation_prompt = c["add_generation_prompt"];
    g.options.bos_token = c["bos_token"];
    g.options.eos_token = c["eos_token"];
    if (c.contains("now")) g.options.now_unix_seconds = c["now"].get<int64_t>();
    g.expect_error = c.contains("error");
    if (g.expect_error) {
      g.error_class = c["error"];
      g.expected = c["error_message"];
    } else {
      g.expected = c["expected"];
    }
    cases.push_back(std::move(g));
  }
  return cases;
}

class ChatTemplateGoldenTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(ChatTemplateGoldenTest, MatchesJinja2) {
  const GoldenCase& c = GetParam();
  absl::StatusOr<std::string> out = ApplyChatTemplate(c.tmpl, c.messages, c.options);
  if (!c.expect_error) {
    ASSERT_OK(out);
    EXPECT_EQ(*out, c.expected);
    return;
  }
  // jinja2's messages differ from ours; the code, and the template's own text for
  // raise_exception, must not.
  if (c.error_class == "RaisedByTemplate") {
    EXPECT_THAT(out, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.expected)));
  } else {
    EXPECT_THAT(out, StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

std::string CaseName(const ::testing::TestParamInfo<GoldenCase>& info) {
  std::string name = info.param.name;
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Jinja2, ChatTemplateGoldenTest, ::testing::ValuesIn(LoadGoldenCases()),
                         CaseName);

TEST(ChatTemplateGoldenData, Present) {
  // An empty suite would pass silently if the data went missing.
  EXPECT_GT(LoadGoldenCases().size(), 300u);
}

// The default model's template is the one the generator extracted from its GGUF.
TEST(ChatTemplateModel, SmolLm2TemplateMatchesGguf) {
  if (!std::filesystem::exists(DefaultModelPath())) GTEST_SKIP() << "model not fetched";
  absl::StatusOr<std::unique_ptr<gguf::File>> file = gguf::File::Open(DefaultModelPath());
  ASSERT_OK(file);
  absl::StatusOr<std::string> tmpl = (*file)->GetString("tokenizer.chat_template");
  ASSERT_OK(tmpl);
  EXPECT_EQ(*tmpl, TemplateFile("smollm2"));
  absl::StatusOr<std::string> out =
      ApplyChatTemplate(*tmpl, {{"user", "Hi"}}, {true, "<|im_start|>", "<|im_end|>"});
  ASSERT_OK(out);
  EXPECT_EQ(*out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

MATCHER_P(RendersTo, expected, "") {
  if (!arg.ok()) {
    *result_listener << "fails: " << arg.status();
    return false;
  }
  *result_listener << "renders \"" << *arg << "\"";
  return *arg == expected;
}

absl::StatusOr<std::string> Render(std::string_view tmpl) {
  return ApplyChatTemplate(tmpl, {{"user", "hi"}}, {});
}

TEST(ChatTemplateErrors, UnsupportedConstructsNameThemselvesAndTheirOffset) {
  EXPECT_THAT(Render("abc {% include 'x.j2' %}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unsupported tag '{% include %}' at offset 4")));
  EXPECT_THAT(Render("{% extends 'base' %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'{% extends %}'")));
  EXPECT_THAT(Render("{{ messages | wordwrap(4) }}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unsupported filter 'wordwrap' at offset 14")));
  EXPECT_THAT(Render("{{ 1 is prime }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unsupported test 'prime'")));
  EXPECT_THAT(Render("{% for m in messages recursive %}{% endfor %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("recursive")));
  EXPECT_THAT(Render("{{ f(*args) }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("*args")));
  EXPECT_THAT(Render("{{ '%s' % 'x' }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'%' formatting")));
  EXPECT_THAT(Render("{{ messages.append(1) }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("list.append")));
  EXPECT_THAT(Render("{{ 'x'.format(1) }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("has no attribute 'format'")));
}

TEST(ChatTemplateErrors, MalformedTemplatesPointAtTheProblem) {
  EXPECT_THAT(Render("ab {{ x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unterminated '{{' (no matching '}}') at offset 3")));
  EXPECT_THAT(Render("{% if true %}x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'{% if %}' is never closed (expected 'elif' or 'else' or 'endif') at offset 0")));
  EXPECT_THAT(Render("{% if true %}{% endfor %}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unexpected '{% endfor %}' (expected 'elif' or 'else' or 'endif' to "
                                 "close '{% if %}' at offset 0) at offset 13")));
  EXPECT_THAT(Render("{{ 1 + }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected an expression, got '}}'")));
  EXPECT_THAT(Render("{{ (1 ]}}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unbalanced ']'")));
  EXPECT_THAT(Render("{{ 'abc }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unterminated string literal at offset 3")));
  EXPECT_THAT(Render("{{ 99999999999999999999 }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("64-bit")));
  EXPECT_THAT(Render("{% break %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside a loop")));
  EXPECT_THAT(Render("{{ x @ y }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unexpected character '@'")));
}

TEST(ChatTemplateErrors, RaiseExceptionCarriesTheTemplatesMessage) {
  absl::StatusOr<std::string> out =
      ApplyChatTemplate(TemplateFile("llama2"), {{"user", "a"}, {"user", "b"}}, {true, "<s>", "</s>"});
  EXPECT_THAT(out, StatusIs(absl::StatusCode::kInvalidArgument,
                            HasSubstr("Conversation roles must alternate user/assistant/user/assistant/...")));
  EXPECT_THAT(Render("{{ raise_exception('bad ' ~ messages[0].role) }}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("bad user (raise_exception at offset 3)")));
}

TEST(ChatTemplateErrors, RuntimeErrorsNameTheOffset) {
  EXPECT_THAT(Render("{{ messages[0].content + 1 }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("concatenate str")));
  EXPECT_THAT(Render("{{ nope.x }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'nope' is undefined at offset 7")));
  EXPECT_THAT(Render("{% set ns = 1 %}{% set ns.x = 2 %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a namespace()")));
  EXPECT_THAT(Render("{{ namespace() }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot convert a namespace")));
}

TEST(ChatTemplateLimits, DeepNestingIsRejectedNotACrash) {
  const int n = 100000;
  EXPECT_THAT(Render("{{ " + std::string(n, '(') + "1" + std::string(n, ')') + " }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nests too deeply")));
  EXPECT_THAT(Render("{{ " + std::string(n, '[') + std::string(n, ']') + " }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nests too deeply")));
  EXPECT_THAT(Render("{{ " + std::string(n, '-') + "1 }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nests too deeply")));
  std::string nots;
  for (int i = 0; i < n; ++i) nots += "not ";
  EXPECT_THAT(Render("{{ " + nots + "1 }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nests too deeply")));
  std::string sum = "1";
  for (int i = 0; i < n; ++i) sum += "+1";
  EXPECT_THAT(Render("{{ " + sum + " }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nests too deeply")));
  std::string ifs;
  for (int i = 0; i < 10000; ++i) ifs += "{% if true %}";
  EXPECT_THAT(Render(ifs), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nests too deeply")));
}

TEST(ChatTemplateLimits, RunawayRenderingIsBounded) {
  EXPECT_THAT(Render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("recursion is too deep")));
  EXPECT_THAT(Render("{{ 'x' * 1000000000 }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bytes")));
  EXPECT_THAT(Render("{{ [1] * 1000000000 }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("items")));
  EXPECT_THAT(Render("{% for i in range(1000000) %}{% endfor %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("range()")));
  EXPECT_THAT(Render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("work limit")));
  EXPECT_THAT(Render("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("output exceeds")));
  EXPECT_THAT(Render("{{ '' * 1000000000000 }}|{{ [] * 1000000000000 }}"),
              RendersTo("|[]"));
  EXPECT_THAT(Render("{{ range(9223372036854775806, 9223372036854775807, 10) | list }}"
                     "{{ range(-9223372036854775806, -9223372036854775807, -3) | list }}"),
              RendersTo("[9223372036854775806][-9223372036854775806]"));
  EXPECT_THAT(Render("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}"
                     "{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nests deeper than 100")));
  EXPECT_THAT(Render("{% set ns = namespace(x={}) %}{% for i in range(100000) %}"
                     "{% set ns.x = {'k': ns.x} | items | list %}{% endfor %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nests deeper")));
  EXPECT_THAT(Render("{% set ns = namespace(s='x') %}{% for i in range(100) %}"
                     "{% set ns.s = ns.s ~ ns.s %}{% endfor %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bytes")));
}

// Every prefix and many single-byte corruptions of every model template either
// render or fail cleanly.
TEST(ChatTemplateLimits, TruncatedAndCorruptedTemplatesNeverCrash) {
  const std::vector<ChatMessage> conversation = {
      {"system", "s"}, {"user", "u"}, {"assistant", "a"}, {"user", "u2"}};
  const char kNoise[] = "{}%#-+()[]'\"|.,:=~ \n\\x";
  uint32_t rng = 12345;
  for (const auto& entry :
       std::filesystem::directory_iterator(SourcePath("tests/data/chat/templates"))) {
    const std::string tmpl = ReadFile(entry.path().string());
    for (size_t n = 0; n <= tmpl.size(); ++n) {
      (void)ApplyChatTemplate(tmpl.substr(0, n), conversation, {});
    }
    for (int i = 0; i < 300; ++i) {
      std::string mutated = tmpl;
      rng = rng * 1664525u + 1013904223u;
      mutated[(rng >> 8) % mutated.size()] = kNoise[(rng >> 20) % (sizeof(kNoise) - 1)];
      (void)ApplyChatTemplate(mutated, conversation, {});
    }
  }
}

TEST(ChatTemplate, LongConversationRendersInFullAndQuickly) {
  std::vector<ChatMessage> conversation;
  std::string expected;
  for (int i = 0; i < 20000; ++i) {
    conversation.push_back({i % 2 ? "assistant" : "user", "message " + std::to_string(i)});
    expected += "<|im_start|>" + conversation.back().role + "\n" + conversation.back().content +
                "<|im_end|>\n";
  }
  absl::StatusOr<std::string> out =
      ApplyChatTemplate(TemplateFile("chatml"), conversation, {false, "", ""});
  ASSERT_OK(out);
  EXPECT_EQ(*out, expected);
}

// Constructs jinja2 cannot produce a golden for: transformers' {% generation %} tag
// (an extension of its own), the clock, and int64 overflow (Python ints are unbounded).
TEST(ChatTemplate, TransformersExtrasAndDeliberateDifferences) {
  EXPECT_THAT(Render("{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}"
                     "{% endfor %}"),
              RendersTo("[hi]"));
  absl::StatusOr<std::string> year = Render("{{ strftime_now('%Y') }}");
  ASSERT_OK(year);
  EXPECT_EQ(year->size(), 4u);
  EXPECT_THAT(Render("{{ 9223372036854775807 + 1 }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("integer overflow")));
  EXPECT_THAT(Render("{{ 2 ** 64 }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("integer overflow")));
}

TEST(ChatTemplate, InvalidUtf8InContentPassesThrough) {
  const std::string content = "a\xff\xfe b\xc3";
  absl::StatusOr<std::string> out =
      ApplyChatTemplate("{{ messages[0].content }}|{{ messages[0].content | length }}|"
                        "{{ messages[0].content | upper }}",
                        {{"user", content}}, {});
  ASSERT_OK(out);
  EXPECT_EQ(*out, content + "|6|A\xff\xfe B\xc3");
}

}  // namespace
}  // namespace ingot
