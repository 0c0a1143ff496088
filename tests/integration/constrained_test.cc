// Constrained output end to end (issue 19) on the default model: for JSON Schemas
// (nested objects, arrays, enums, bounded numbers, optional properties, $ref, a pattern
// and anyOf) and GBNF grammars (arithmetic, a CSV line, a date), 20 completions sampled
// at temperature 1.0 each must end by themselves (EOS where the grammar may end) and
// be judged valid by Python (tests/integration/constrained_judge.py: the jsonschema
// package for schemas, an independent reading for grammars). Also: unsupported and
// unsatisfiable schemas and bad grammars are refused before any token, a grammar the
// vocabulary cannot continue ends with FINISH_REASON_GRAMMAR_DEAD_END, json_object
// gives JSON objects, and the CLI's --json-schema / --grammar reach the server.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "nlohmann/json.hpp"
#include "tests/integration/integration_fixture.h"

namespace ingot::testing {
namespace {

using ::testing::HasSubstr;

struct Case {
  std::string name;
  std::string kind;  // "schema" or "grammar"
  std::string text;  // the schema (JSON) or the grammar (GBNF)
  std::string prompt;
};

const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      {"nested", "schema",
       R"({"type":"object","properties":{"user":{"type":"object","properties":{
           "name":{"type":"string","minLength":1,"maxLength":12},"id":{"type":"integer","minimum":1,"maximum":9999}},
           "required":["name","id"]},"active":{"type":"boolean"}},"required":["user","active"]})",
       "A user record as JSON:"},
      {"array", "schema",
       R"({"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","maxLength":8},
           "minItems":1,"maxItems":3}},"required":["tags"]})",
       "Tags for a blog post about cooking, as JSON:"},
      {"enum", "schema",
       R"({"type":"object","properties":{"color":{"enum":["red","green","blue"]},"size":{"enum":["S","M","L",null]}},
           "required":["color","size"]})",
       "A T-shirt order as JSON:"},
      {"bounded-numbers", "schema",
       R"({"type":"object","properties":{"temp":{"type":"number","minimum":-20,"maximum":45},
           "count":{"type":"integer","exclusiveMinimum":0,"maximum":100}},"required":["temp","count"]})",
       "Weather reading as JSON:"},
      {"optional", "schema",
       R"({"type":"object","properties":{"title":{"type":"string","maxLength":10},
           "year":{"type":"integer","minimum":1900,"maximum":2030},"note":{"type":"string","maxLength":6}},
           "required":["title"]})",
       "A film as JSON:"},
      {"ref", "schema",
       R"({"$defs":{"point":{"type":"object","properties":{"x":{"type":"integer","minimum":-50,"maximum":50},
           "y":{"type":"integer","minimum":-50,"maximum":50}},"required":["x","y"]}},
           "type":"object","properties":{"from":{"$ref":"#/$defs/point"},"to":{"$ref":"#/$defs/point"}},
           "required":["from","to"]})",
       "A line segment as JSON:"},
      {"pattern-anyof", "schema",
       R"({"type":"object","properties":{"day":{"type":"string","pattern":"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
           "value":{"anyOf":[{"type":"integer","minimum":0,"maximum":9},{"type":"null"}]}},
           "required":["day","value"]})",
       "A measurement as JSON:"},
      {"arithmetic", "grammar",
       "root ::= term (ws op ws term){0,3}\n"
       "term ::= num | \"(\" num (ws op ws num){1,2} \")\"\n"
       "op ::= [-+*/]\nnum ::= \"0\" | [1-9] [0-9]{0,2}\nws ::= \" \"?\n",
       "An arithmetic expression:"},
      {"csv", "grammar",
       "root ::= field (\",\" field){2,4}\n"
       "field ::= [a-zA-Z0-9 ]{1,10} | \"\\\"\" [^\"\\n\\r]{0,10} \"\\\"\"\n",
       "name,city,age\n"},
      {"date", "grammar",
       "root ::= [0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])\n",
       "The treaty was signed on"},
  };
  return cases;
}

void SetConstraint(const Case& c, v1::GenerateRequest* r) {
  if (c.kind == "schema") {
    r->set_json_schema(c.text);
  } else {
    r->set_grammar(c.text);
  }
}

// Runs `request` (n completions) and returns each completion's text and finish reason.
struct Completions {
  grpc::Status status;
  std::vector<std::string> texts;
  std::vector<v1::FinishReason> finish;
};
Completions RunN(const std::shared_ptr<grpc::Channel>& channel, const v1::GenerateRequest& request) {
  Completions out;
  const int n = std::max(1, request.n());
  out.texts.resize(n);
  out.finish.resize(n, v1::FINISH_REASON_UNSPECIFIED);
  auto stub = v1::GenerationService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(600));
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  int messages = 0;
  while (reader->Read(&response)) {
    ++messages;
    const int i = response.index();
    if (i < 0 || i >= n) continue;
    out.texts[i] += response.text();
    // With n > 1 the stream's extra last message repeats completion 0's reason.
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED && out.finish[i] == v1::FINISH_REASON_UNSPECIFIED) {
      out.finish[i] = response.finish_reason();
    }
  }
  out.status = reader->Finish();
  return out;
}

std::string JudgePython() { return std::string(INGOT_SOURCE_DIR) + "/.venv-deploy/bin/python"; }

TEST_F(IngotdTest, ConstrainedSamplesAllValidate) {
  if (!std::filesystem::exists(JudgePython())) {
    if (std::getenv("CI")) FAIL() << "no " << JudgePython() << " (tests/deploy/setup_tools.sh makes it)";
    GTEST_SKIP() << "no " << JudgePython() << " (tests/deploy/setup_tools.sh makes it)";
  }
  nlohmann::json cases = nlohmann::json::array();
  for (const Case& c : Cases()) {
    nlohmann::json entry = {{"name", c.name}, {"kind", c.kind}, {"outputs", nlohmann::json::array()}};
    if (c.kind == "schema") entry["schema"] = nlohmann::json::parse(c.text);
    // 20 samples: two requests of 10 completions (seeds 1..10 and 101..110).
    for (uint64_t seed : {1u, 101u}) {
      v1::GenerateRequest r;
      r.set_model("default");
      r.set_prompt(c.prompt);
      r.set_temperature(1.0f);
      r.set_max_tokens(160);
      r.set_seed(seed);
      r.set_n(10);
      SetConstraint(c, &r);
      Completions got = RunN(channel(), r);
      ASSERT_TRUE(got.status.ok()) << c.name << ": " << got.status.error_message();
      for (size_t i = 0; i < got.texts.size(); ++i) {
        // EOS is allowed only where the grammar may end: every sample ended by itself.
        EXPECT_EQ(got.finish[i], v1::FINISH_REASON_EOS) << c.name << " seed " << seed << " #" << i << ": "
                                                        << got.texts[i];
        entry["outputs"].push_back(got.texts[i]);
      }
    }
    cases.push_back(entry);
  }
  const std::string dir = MakeTempDir();
  const std::string path = dir + "/constrained_outputs.json";
  std::ofstream(path) << cases.dump(1);
  CommandResult judge =
      RunCommand({JudgePython(), std::string(INGOT_SOURCE_DIR) + "/tests/integration/constrained_judge.py", path});
  EXPECT_EQ(judge.exit_code, 0) << judge.out << judge.err;
  std::printf("%s", judge.out.c_str());
  std::filesystem::remove_all(dir);
}

TEST_F(IngotdTest, ConstrainedRefusedBeforeGeneration) {
  struct Bad {
    const char* schema;
    const char* grammar;
    const char* message;
  };
  for (const Bad& b : {
           Bad{R"({"type":"array","items":{"type":"string"},"uniqueItems":true})", nullptr,
               "keyword 'uniqueItems' is not supported"},
           Bad{R"({"type":"object","properties":{"n":{"type":"integer","minimum":10,"maximum":3}},"required":["n"]})",
               nullptr, "unsatisfiable"},
           Bad{R"({"type":"array","minItems":4,"maxItems":2})", nullptr, "minItems 4 > maxItems 2"},
           Bad{nullptr, "root ::= \"a\" | (\"b\"\n", "grammar: grammar 1:16: unclosed '('"},
           Bad{nullptr, "root ::= value\n", "rule 'value' is used but never defined"},
       }) {
    v1::GenerateRequest r = Greedy("default", "Hello", 8);
    if (b.schema) r.set_json_schema(b.schema);
    if (b.grammar) r.set_grammar(b.grammar);
    Generation g = Generate(channel(), r);
    EXPECT_EQ(g.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << b.message;
    EXPECT_THAT(g.status.error_message(), HasSubstr(b.message));
    EXPECT_EQ(g.messages, 0) << "no token before the refusal";
  }
}

TEST_F(IngotdTest, ConstrainedDeadEndEndsWithItsReason) {
  // After "a" the grammar wants a UTF-16 surrogate, which no UTF-8 text (so no token)
  // can spell: the stream ends there, naming the grammar, instead of hanging.
  v1::GenerateRequest r = Greedy("default", "Say something:", 16);
  r.set_grammar("root ::= \"a\" [\\uD800-\\uDFFF] \"b\"\n");
  Generation g = Generate(channel(), r);
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.last.finish_reason(), v1::FINISH_REASON_GRAMMAR_DEAD_END);
  EXPECT_EQ(g.text, "a");
}

TEST_F(IngotdTest, ConstrainedMaskComesBeforeTopKTopPAndPenalties) {
  // top_k 1 / top_p 0.05 keep the best *allowed* token: were they applied before the
  // mask, the prose's likely next token (not a digit) would be all that is left.
  v1::GenerateRequest r;
  r.set_model("default");
  r.set_prompt("Once upon a time, there was");
  r.set_max_tokens(12);
  r.set_temperature(1.0f);
  r.set_top_k(1);
  r.set_top_p(0.05f);
  r.set_repetition_penalty(1.5f);
  r.set_presence_penalty(2.0f);
  r.set_seed(9);
  r.set_n(3);
  r.set_grammar("root ::= [0-9]{3} \".\"\n");
  Completions got = RunN(channel(), r);
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  for (size_t i = 0; i < got.texts.size(); ++i) {
    EXPECT_EQ(got.finish[i], v1::FINISH_REASON_EOS) << got.texts[i];
    EXPECT_EQ(got.texts[i].size(), 4u) << got.texts[i];
    EXPECT_TRUE(std::all_of(got.texts[i].begin(), got.texts[i].begin() + 3, ::isdigit)) << got.texts[i];
    EXPECT_EQ(got.texts[i], got.texts[0]) << "top_k 1: every completion takes the best allowed token";
  }
}

TEST_F(IngotdTest, ConstrainedJsonObjectGivesObjects) {
  v1::GenerateRequest r;
  r.set_model("default");
  r.set_prompt("A JSON object describing a cat:");
  r.set_temperature(0.7f);
  r.set_max_tokens(200);
  r.set_seed(5);
  r.set_n(4);
  r.set_json_object(true);
  Completions got = RunN(channel(), r);
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  for (size_t i = 0; i < got.texts.size(); ++i) {
    if (got.finish[i] != v1::FINISH_REASON_EOS) continue;  // a long object may reach max_tokens
    auto doc = nlohmann::json::parse(got.texts[i], nullptr, false);
    EXPECT_TRUE(doc.is_object()) << got.texts[i];
  }
  EXPECT_NE(std::count(got.finish.begin(), got.finish.end(), v1::FINISH_REASON_EOS), 0);
}

TEST_F(IngotdTest, ConstrainedCliFlags) {
  const std::string dir = MakeTempDir();
  std::ofstream(dir + "/s.json") << R"({"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]})";
  std::ofstream(dir + "/g.gbnf") << "root ::= \"yes\" | \"no\"\n";
  const std::string server = server_->address();
  CommandResult js = RunCommand({Cli(), "--server", server, "generate", "default", "Answer as JSON:", "--json-schema",
                                 dir + "/s.json", "-n", "20", "--seed", "3"});
  ASSERT_EQ(js.exit_code, 0) << js.err;
  auto doc = nlohmann::json::parse(js.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << js.out;
  EXPECT_TRUE(doc["ok"].is_boolean());
  CommandResult gr = RunCommand({Cli(), "--server", server, "generate", "default", "Yes or no?", "--grammar",
                                 dir + "/g.gbnf", "-n", "5", "--stats"});
  ASSERT_EQ(gr.exit_code, 0) << gr.err;
  std::string out = gr.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  EXPECT_TRUE(out == "yes" || out == "no") << gr.out;
  EXPECT_THAT(gr.err, HasSubstr("finish=eos"));
  CommandResult both = RunCommand({Cli(), "--server", server, "generate", "default", "x", "--grammar",
                                   dir + "/g.gbnf", "--json-object"});
  EXPECT_NE(both.exit_code, 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ingot::testing
