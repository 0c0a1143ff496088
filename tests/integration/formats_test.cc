// Checkpoints in other tools' layouts through the real server: LoadModel of Hugging
// Face directories (dense and quantized) that then generate; malformed safetensors
// refused with INVALID_ARGUMENT naming the file and tensor while the server keeps
// serving; SaveModel to GGUF and a LoadModel of the result with the same greedy tokens.
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingot/v1/quantization.grpc.pb.h"
#include "tests/integration/integration_fixture.h"
#include "tests/integration/ingotd_process.h"

namespace ingot::testing {
namespace {

using ::testing::HasSubstr;

std::string FormatsDir() { return std::string(INGOT_SOURCE_DIR) + "/tests/data/formats"; }

std::vector<int32_t> GreedyIds(const std::shared_ptr<grpc::Channel>& ch, const std::string& model) {
  Generation g = Generate(ch, Greedy(model, "The cat sat on", 8));
  EXPECT_TRUE(g.status.ok()) << model << ": " << g.status.error_message();
  return g.ids;
}

void Unload(v1::ModelService::Stub* stub, const std::string& name) {
  grpc::ClientContext ctx;
  v1::UnloadModelRequest r;
  r.set_name(name);
  v1::UnloadModelResponse resp;
  EXPECT_TRUE(stub->UnloadModel(&ctx, r, &resp).ok()) << name;
}

TEST_F(IngotdTest, LoadsHuggingFaceLayoutsAndSavesGguf) {
  auto stub = models();
  struct Case {
    const char* dir;
    const char* format;        // ModelInfo.format
    const char* quantization;  // substring of ModelInfo.quantization ("" = none)
    const char* note = "";     // substring of ModelInfo.quantization_note
  };
  for (const Case& c : {Case{"hf-f32", "safetensors", ""}, Case{"hf-bin", "torch", ""},
                        Case{"bnb-nf4", "safetensors/bitsandbytes-4bit", "quant_type=nf4"},
                        Case{"gptq-4bit-g32", "safetensors/gptq", "bits=4 group_size=32"},
                        Case{"hqq-4bit-g64", "torch/hqq", "hqq"},
                        // Groups across outputs: read as f16, and the note says so.
                        Case{"hqq-4bit-g64-axis0", "torch/hqq", "hqq", "dequantized at load to f16"},
                        // torchao's CPU int4 and int8 weight-only, pickled by torch.save.
                        Case{"torchao-int4-g32", "torch/torchao",
                             "bits=4 group_size=32 quant_type=PrototypeInt4WeightOnlyConfig"},
                        Case{"torchao-int8wo-bin", "torch/torchao", "quant_type=Int8WeightOnlyConfig"}}) {
    SCOPED_TRACE(c.dir);
    LoadResult r = Load(channel(), c.dir, FormatsDir() + "/" + c.dir);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    const v1::ModelInfo& info = r.messages.back().model();
    EXPECT_EQ(info.format(), c.format);
    EXPECT_THAT(info.quantization(), HasSubstr(c.quantization));
    EXPECT_THAT(info.quantization_note(), HasSubstr(c.note));
    EXPECT_EQ(info.architecture(), "llama");
    EXPECT_EQ(GreedyIds(channel(), c.dir).size(), 8u);
    Unload(stub.get(), c.dir);
  }

  // Save the dense one as GGUF, load that back: the same greedy tokens.
  const std::string out = ::testing::TempDir() + "/ingot_export.gguf";
  std::filesystem::remove(out);
  ASSERT_TRUE(Load(channel(), "dense", FormatsDir() + "/hf-f32").status.ok());
  const std::vector<int32_t> want = GreedyIds(channel(), "dense");
  CommandResult save = RunCommand({Cli(), "--server", server_->address(), "save", "dense", out});
  EXPECT_EQ(save.exit_code, 0) << save.err;
  EXPECT_THAT(save.out, HasSubstr("gguf"));
  CommandResult again = RunCommand({Cli(), "--server", server_->address(), "save", "dense", out});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_THAT(again.err, HasSubstr("exists"));
  LoadResult back = Load(channel(), "dense-gguf", out);
  ASSERT_TRUE(back.status.ok()) << back.status.error_message();
  EXPECT_EQ(back.messages.back().model().format(), "gguf");
  EXPECT_EQ(GreedyIds(channel(), "dense-gguf"), want);
  // A quantized representation without a GGUF type: FAILED_PRECONDITION naming it.
  ASSERT_TRUE(Load(channel(), "nf4", FormatsDir() + "/bnb-nf4").status.ok());
  grpc::ClientContext ctx;
  v1::SaveModelRequest req;
  req.set_name("nf4");
  req.set_path(::testing::TempDir() + "/nf4.gguf");
  v1::SaveModelResponse resp;
  grpc::Status s = stub->SaveModel(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("nf4"));
  for (const char* m : {"dense", "dense-gguf", "nf4"}) Unload(stub.get(), m);
  std::filesystem::remove(out);
}

// LoadModel with a QuantizationConfig quantizes a dense checkpoint while loading; a
// checkpoint saved quantized keeps its own, and the note says so.
TEST_F(IngotdTest, QuantizeWhileLoadingAndTheCheckpointsOwnConfigWins) {
  auto stub = models();
  auto load = [&](const std::string& name, const std::string& dir) {
    v1::LoadModelRequest req;
    req.set_name(name);
    req.set_source(FormatsDir() + "/" + dir);
    req.mutable_quantization()->set_method("hqq");
    req.mutable_quantization()->set_bits(4);
    req.mutable_quantization()->set_group_size(32);
    grpc::ClientContext ctx;
    auto reader = stub->LoadModel(&ctx, req);
    v1::LoadModelResponse r, last;
    bool saw_quantize = false;
    while (reader->Read(&r)) {
      saw_quantize |= r.progress().stage() == "quantize";
      last = r;
    }
    EXPECT_TRUE(reader->Finish().ok()) << name;
    return std::make_pair(last.model(), saw_quantize);
  };
  auto [dense, progressed] = load("dense-hqq", "hf-f32");
  EXPECT_TRUE(progressed);
  EXPECT_THAT(dense.quantization(), HasSubstr("hqq"));
  EXPECT_THAT(dense.quantization_note(), HasSubstr("quantized while loading"));
  bool affine = false;
  for (const auto& k : dense.tensor_kinds()) affine |= k.representation() == "affine4/g32";
  EXPECT_TRUE(affine) << dense.DebugString();
  EXPECT_EQ(GreedyIds(channel(), "dense-hqq").size(), 8u);
  auto [nf4, unused] = load("kept-nf4", "bnb-nf4");
  EXPECT_THAT(nf4.quantization(), HasSubstr("bitsandbytes"));
  EXPECT_THAT(nf4.quantization_note(), HasSubstr("was not applied"));
  // A bad config is refused naming the field, and nothing stays registered.
  v1::LoadModelRequest bad;
  bad.set_name("bad-q");
  bad.set_source(FormatsDir() + "/hf-f32");
  bad.mutable_quantization()->set_method("hqq");
  bad.mutable_quantization()->set_bits(5);
  grpc::ClientContext ctx;
  auto reader = stub->LoadModel(&ctx, bad);
  v1::LoadModelResponse r;
  while (reader->Read(&r)) {}
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("bits"));
  ExpectFailedThenUnload(channel(), "bad-q", "INVALID_ARGUMENT");
  for (const char* m : {"dense-hqq", "kept-nf4"}) Unload(stub.get(), m);
}

TEST_F(IngotdTest, MalformedSafetensorsAreInvalidArgumentAndTheServerServes) {
  const std::string src = FormatsDir() + "/hf-f32";
  std::ifstream in(src + "/model.safetensors", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string good = ss.str();
  uint64_t header_len;
  std::memcpy(&header_len, good.data(), 8);
  struct Case {
    std::string name, bytes, message;
  };
  std::string huge_len = good;
  const uint64_t big = good.size() * 2;
  std::memcpy(&huge_len[0], &big, 8);
  // The tensor ending last gets an end offset of the same width made of 9s: past the
  // end of the file (the header length stays the same).
  std::string bad_offsets = good;
  size_t best_at = 0, best_len = 0;
  uint64_t best_end = 0;
  for (size_t at = bad_offsets.find("\"data_offsets\":["); at != std::string::npos && at < 8 + header_len;
       at = bad_offsets.find("\"data_offsets\":[", at + 1)) {
    const size_t comma = bad_offsets.find(',', at), close = bad_offsets.find(']', comma);
    const uint64_t e = std::stoull(bad_offsets.substr(comma + 1, close - comma - 1));
    if (e >= best_end) {
      best_end = e;
      best_at = comma + 1;
      best_len = close - comma - 1;
    }
  }
  ASSERT_GT(best_len, 0u);
  bad_offsets.replace(best_at, best_len, std::string(best_len, '9'));
  ASSERT_GT(std::stoull(std::string(best_len, '9')), good.size());
  const std::vector<Case> cases = {
      {"truncated-header", good.substr(0, 6), "model.safetensors"},
      {"header-beyond-file", huge_len, "model.safetensors"},
      {"offset-outside-file", bad_offsets, "model.safetensors"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string dir = ::testing::TempDir() + "/bad-" + c.name;
    std::filesystem::create_directories(dir);
    for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"}) {
      std::filesystem::copy_file(src + "/" + f, dir + "/" + f, std::filesystem::copy_options::overwrite_existing);
    }
    std::ofstream(dir + "/model.safetensors", std::ios::binary) << c.bytes;
    LoadResult r = Load(channel(), c.name, dir);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << r.status.error_message();
    EXPECT_THAT(r.status.error_message(), HasSubstr(c.message));
    ExpectFailedThenUnload(channel(), c.name, "INVALID_ARGUMENT");
    Generation g = Generate(channel(), Greedy("default", "Hello", 4));
    EXPECT_TRUE(g.status.ok()) << g.status.error_message();
    std::filesystem::remove_all(dir);
  }
  // A config.json without a required key names it.
  const std::string dir = ::testing::TempDir() + "/bad-config";
  std::filesystem::create_directories(dir);
  for (const char* f : {"model.safetensors", "tokenizer.json", "tokenizer_config.json"}) {
    std::filesystem::copy_file(src + "/" + f, dir + "/" + f, std::filesystem::copy_options::overwrite_existing);
  }
  std::ofstream(dir + "/config.json") << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64})";
  LoadResult r = Load(channel(), "bad-config", dir);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << r.status.error_message();
  EXPECT_THAT(r.status.error_message(), HasSubstr("num_hidden_layers"));
  ExpectFailedThenUnload(channel(), "bad-config", "INVALID_ARGUMENT");
  std::filesystem::remove_all(dir);
  // An unsupported architecture is named.
  std::filesystem::create_directories(dir);
  for (const char* f : {"model.safetensors", "tokenizer.json", "tokenizer_config.json"}) {
    std::filesystem::copy_file(src + "/" + f, dir + "/" + f, std::filesystem::copy_options::overwrite_existing);
  }
  std::ofstream(dir + "/config.json") << R"({"architectures": ["GPT2LMHeadModel"]})";
  r = Load(channel(), "bad-arch", dir);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << r.status.error_message();
  EXPECT_THAT(r.status.error_message(), HasSubstr("GPT2LMHeadModel"));
  ExpectFailedThenUnload(channel(), "bad-arch", "UNIMPLEMENTED");
  std::filesystem::remove_all(dir);

  // A tensor of the wrong dtype (same byte count), a missing shard, a pickle that names
  // a global that is not a tensor type: INVALID_ARGUMENT naming the tensor or file, and
  // the default model still answers.
  auto copy_tokenizer = [&](const std::string& to) {
    std::filesystem::create_directories(to);
    for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"}) {
      std::filesystem::copy_file(src + "/" + f, to + "/" + f, std::filesystem::copy_options::overwrite_existing);
    }
  };
  std::string wrong_dtype = good;
  const std::string norm = "\"model.norm.weight\":{\"dtype\":\"F32\"";
  const size_t at = wrong_dtype.find(norm);
  ASSERT_NE(at, std::string::npos);
  wrong_dtype.replace(at + norm.size() - 4, 3, "I32");
  struct Broken {
    std::string name, message;
    std::function<void(const std::string&)> make;
  };
  const std::vector<Broken> broken = {
      {"wrong-dtype", "model.norm.weight",
       [&](const std::string& d) { std::ofstream(d + "/model.safetensors", std::ios::binary) << wrong_dtype; }},
      {"missing-shard", "model-00002-of-00002.safetensors",
       [&](const std::string& d) {
         std::ofstream(d + "/model-00001-of-00002.safetensors", std::ios::binary) << good;
         std::ofstream(d + "/model.safetensors.index.json")
             << R"({"metadata": {}, "weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors", )"
                R"("model.norm.weight": "model-00002-of-00002.safetensors"}})";
       }},
      {"pickle-global", "evil.pt",
       [&](const std::string& d) {
         std::filesystem::copy_file(FormatsDir() + "/containers/evil.pt", d + "/evil.pt");
       }},
  };
  for (const Broken& b : broken) {
    SCOPED_TRACE(b.name);
    const std::string d = ::testing::TempDir() + "/broken-" + b.name;
    std::filesystem::remove_all(d);
    copy_tokenizer(d);
    b.make(d);
    LoadResult lr = Load(channel(), b.name, d);
    EXPECT_EQ(lr.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << lr.status.error_message();
    EXPECT_THAT(lr.status.error_message(), HasSubstr(b.message));
    ExpectFailedThenUnload(channel(), b.name, "INVALID_ARGUMENT");
    Generation g = Generate(channel(), Greedy("default", "Hello", 4));
    EXPECT_TRUE(g.status.ok()) << g.status.error_message();
    std::filesystem::remove_all(d);
  }
}

// ingot's own layout through the server and the CLI: the default model, and an NF4
// (double quant) quantization of it, saved with `ingot save --format ingot` and loaded
// back: the same representations and the same greedy tokens on a chat prompt.
TEST_F(IngotdTest, SavesIngotLayoutThatLoadsBackIdentical) {
  auto stub = models();
  auto qstub = v1::QuantizationService::NewStub(channel());
  {
    v1::QuantizeModelRequest request;
    request.set_source("default");
    request.set_target("nf4");
    request.mutable_config()->set_method("bitsandbytes");
    request.mutable_config()->set_quant_type("nf4");
    grpc::ClientContext context;
    context.set_deadline(In(300));
    auto reader = qstub->QuantizeModel(&context, request);
    v1::QuantizeModelResponse response;
    while (reader->Read(&response)) {}
    ASSERT_TRUE(reader->Finish().ok());
  }
  auto representations = [](const v1::ModelInfo& m) {
    std::vector<std::string> out;
    for (const auto& k : m.tensor_kinds()) out.push_back(k.kind() + "=" + k.representation());
    return out;
  };
  for (const char* name : {"default", "nf4"}) {
    SCOPED_TRACE(name);
    const std::string dir = ::testing::TempDir() + "/ingot_layout_" + name;
    std::filesystem::remove_all(dir);
    CommandResult save =
        RunCommand({Cli(), "--server", server_->address(), "save", name, dir, "--format", "ingot"});
    ASSERT_EQ(save.exit_code, 0) << save.err;
    EXPECT_THAT(save.out, HasSubstr("ingot"));
    EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors"));
    EXPECT_TRUE(std::filesystem::exists(dir + "/tokenizer.json"));
    const std::string back = std::string(name) + "-back";
    LoadResult r = Load(channel(), back, dir);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    const v1::ModelInfo& info = r.messages.back().model();
    EXPECT_EQ(info.format(), "safetensors/ingot");
    grpc::ClientContext ctx;
    v1::GetModelRequest get;
    get.set_name(name);
    v1::GetModelResponse orig;
    ASSERT_TRUE(stub->GetModel(&ctx, get, &orig).ok());
    EXPECT_EQ(representations(info), representations(orig.model()));
    EXPECT_EQ(info.weight_bytes(), orig.model().weight_bytes());
    v1::GenerateRequest a = Greedy(name, "", 24);
    a.clear_prompt();
    v1::ChatMessage* turn = a.add_messages();
    turn->set_role("user");
    turn->set_content("What is the capital of France?");
    v1::GenerateRequest b = a;
    b.set_model(back);
    Generation ga = Generate(channel(), a), gb = Generate(channel(), b);
    ASSERT_TRUE(ga.status.ok() && gb.status.ok()) << ga.status.error_message() << gb.status.error_message();
    EXPECT_EQ(ga.ids, gb.ids);
    EXPECT_GE(ga.ids.size(), 8u) << "too short an answer to compare";
    Unload(stub.get(), back);
    std::filesystem::remove_all(dir);
  }
  Unload(stub.get(), "nf4");
}

// A unified repository as the SmolLM3 seed publishes one: the model at the root and
// int8/ and int4/ quantized from it (torchao presets), each with a model card; a
// variant loads by `variant` and generates what the same quantization in memory does.
TEST_F(IngotdTest, SavesAUnifiedRepositoryWithModelCards) {
  auto stub = models();
  LoadResult r = Load(channel(), "tiny", FormatsDir() + "/hf-f32");
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const std::string dir = ::testing::TempDir() + "/ingot_unified";
  std::filesystem::remove_all(dir);
  v1::SaveModelRequest save;
  save.set_name("tiny");
  save.set_path(dir);
  save.set_format("ingot");
  save.set_evaluate(true);
  save.set_evaluate_tokens(256);
  v1::SaveVariant* int8 = save.add_variants();
  int8->set_name("int8");
  int8->mutable_config()->set_preset(v1::QUANTIZATION_PRESET_TORCHAO_INT8);
  v1::SaveVariant* int4 = save.add_variants();
  int4->set_name("int4");
  int4->mutable_config()->set_preset(v1::QUANTIZATION_PRESET_TORCHAO_INT4);
  int4->mutable_config()->set_group_size(32);  // the tiny model's 64 inputs
  v1::SaveModelResponse saved;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(300));
    grpc::Status s = stub->SaveModel(&ctx, save, &saved);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  ASSERT_EQ(saved.directories_size(), 3);
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  const std::string root_card = read(dir + "/README.md");
  EXPECT_THAT(root_card, HasSubstr("library_name: ingot"));
  EXPECT_THAT(root_card, HasSubstr("`int8/`"));
  EXPECT_THAT(root_card, HasSubstr("`int4/`"));
  for (const char* v : {"int8", "int4"}) {
    SCOPED_TRACE(v);
    const std::string card = read(dir + "/" + v + "/README.md");
    EXPECT_THAT(card, HasSubstr("torchao"));
    EXPECT_THAT(card, HasSubstr("KL(base || this)"));
    EXPECT_THAT(card, HasSubstr("ingot load NAME DIR"));
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + v + "/config.json"));
  }
  // The int4 variant by name, against the same quantization done in memory.
  v1::LoadModelRequest load;
  load.set_name("tiny-int4");
  load.set_source(dir);
  load.set_variant("int4");
  r = Load(channel(), load);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  {
    auto qstub = v1::QuantizationService::NewStub(channel());
    v1::QuantizeModelRequest q;
    q.set_source("tiny");
    q.set_target("tiny-q4");
    q.mutable_config()->set_method("TORCHAO_INT4");
    q.mutable_config()->set_group_size(32);
    grpc::ClientContext context;
    context.set_deadline(In(300));
    auto reader = qstub->QuantizeModel(&context, q);
    v1::QuantizeModelResponse response;
    while (reader->Read(&response)) {}
    ASSERT_TRUE(reader->Finish().ok());
  }
  EXPECT_EQ(GreedyIds(channel(), "tiny-int4"), GreedyIds(channel(), "tiny-q4"));
  load.set_variant("../etc");
  load.set_name("bad");
  EXPECT_EQ(Load(channel(), load).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  save.set_format("gguf");
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(stub->SaveModel(&ctx, save, &saved).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  for (const char* n : {"tiny", "tiny-int4", "tiny-q4"}) Unload(stub.get(), n);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ingot::testing
