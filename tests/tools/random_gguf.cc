// Random-weight copies of a Llama GGUF, for machines a real model cannot travel to
// (the GPU hosts take 64 MiB; the default model is ~100 MB):
//
//   random_gguf --strip MODEL.gguf META.gguf
//       every metadata key (architecture, shapes, tokenizer, chat template), no tensors:
//       ~2 MB for the default model
//   random_gguf --fill META.gguf OUT.gguf [--type q4_1|q4_0|q8_0|f16|f32] [--seed N]
//       the tensors a Llama GGUF of META's shapes has (token_embd Q8_0 tied, norms f32,
//       linear layers in --type), weights ~ N(0, 0.02), norms ~ 1 + N(0, 0.1); written
//       through ingot's own GGML quantizers
//   ... --fill META.gguf OUT.gguf --shape llama2-7b [--type ...]
//       META's vocabulary and chat template with Llama-2-7B's shapes (32 layers, 4096
//       embd, 11008 ff, 32 heads; the vocabulary stays META's): the GPU benchmark's
//       model. Each layer repeats the first one's random weights (a 7B model's 6.5 G
//       normal draws would take minutes; speed does not depend on the values).
//       --shape mini: 2 layers, 512 embd, 1024 ff, 8 heads (a dry run of the benchmark
//       script on a CPU machine).
//
// Greedy text from such a model is noise, but every kernel and the forward pass run
// as on the real one: tests/gpu/run.sh compares cuda:0 with the native CPU row on it.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/formats/gguf.h"
#include "kernels/cpu/quantize_ref.h"

namespace ingot {
namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "random_gguf: %s\n", what.c_str());
  return 1;
}

std::string Quantize(GgmlType type, const std::vector<float>& w, int64_t rows, int64_t cols) {
  const size_t row_bytes = GgmlRowSize(type, cols);
  std::string out(row_bytes * rows, '\0');
  QuantizeRowFn fn = GetQuantizeRowFn(type);
  for (int64_t r = 0; r < rows; ++r) fn(w.data() + r * cols, out.data() + r * row_bytes, cols);
  return out;
}

int Strip(const std::string& in, const std::string& out) {
  auto file = gguf::File::Open(in);
  if (!file.ok()) return Fail(file.status().ToString());
  gguf::Writer w;
  for (const auto& [key, value] : (*file)->metadata()) {
    if (key != "general.alignment") w.Add(key, value);
  }
  absl::Status s = w.WriteTo(out);
  return s.ok() ? 0 : Fail(s.ToString());
}

struct Shape {
  int64_t n_layer = 0, d = 0, n_ff = 0, n_head = 0, n_head_kv = 0;
};

int Fill(const std::string& in, const std::string& out, GgmlType type, uint32_t seed, const Shape* shape) {
  auto file = gguf::File::Open(in);
  if (!file.ok()) return Fail(file.status().ToString());
  const gguf::File& f = **file;
  const std::string arch = f.GetStringOr("general.architecture", "llama");
  auto key = [&](const char* k) { return f.GetIntOr(absl::StrCat(arch, ".", k), 0); };
  int64_t n_layer = key("block_count"), d = key("embedding_length"), n_ff = key("feed_forward_length");
  int64_t n_head = key("attention.head_count");
  int64_t n_head_kv = key("attention.head_count_kv") > 0 ? key("attention.head_count_kv") : n_head;
  if (shape != nullptr) {
    n_layer = shape->n_layer;
    d = shape->d;
    n_ff = shape->n_ff;
    n_head = shape->n_head;
    n_head_kv = shape->n_head_kv;
  }
  const int64_t hd = d / n_head;
  const gguf::Value* tokens = f.Find("tokenizer.ggml.tokens");
  if (n_layer <= 0 || d <= 0 || n_ff <= 0 || n_head <= 0 || tokens == nullptr) {
    return Fail(absl::StrCat(in, ": not a Llama GGUF with shapes and a vocabulary"));
  }
  const int64_t vocab = static_cast<int64_t>(tokens->ArraySize());
  gguf::Writer w;
  const std::string shape_keys[] = {"block_count", "embedding_length", "feed_forward_length", "attention.head_count",
                                    "attention.head_count_kv", "rope.dimension_count"};
  for (const auto& [k, value] : f.metadata()) {
    // general.file_type names the source's quantization, not this file's
    if (k == "general.alignment" || k == "general.file_type") continue;
    bool reshaped = false;
    for (const std::string& sk : shape_keys) reshaped |= shape != nullptr && k == arch + "." + sk;
    if (!reshaped) w.Add(k, value);
  }
  if (shape != nullptr) {
    const int64_t values[] = {n_layer, d, n_ff, n_head, n_head_kv, hd};
    for (int i = 0; i < 6; ++i) w.AddUint32(arch + "." + shape_keys[i], static_cast<uint32_t>(values[i]));
  }
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  auto random = [&](int64_t rows, int64_t cols) {
    std::vector<float> v(static_cast<size_t>(rows * cols));
    for (float& x : v) x = nd(rng);
    return v;
  };
  auto norm = [&](const std::string& name) {
    std::vector<float> v(static_cast<size_t>(d));
    for (float& x : v) x = 1.0f + 5.0f * nd(rng);
    w.AddTensor(name, GgmlType::kF32, {d}, std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
  };
  std::map<std::pair<int64_t, int64_t>, std::string> first;  // --shape: one draw per shape
  auto linear = [&](const std::string& name, int64_t rows, int64_t cols, GgmlType t) {
    if (shape == nullptr || t != type) {
      w.AddTensor(name, t, {cols, rows}, Quantize(t, random(rows, cols), rows, cols));
      return;
    }
    std::string& q = first[{rows, cols}];
    if (q.empty()) q = Quantize(t, random(rows, cols), rows, cols);
    w.AddTensor(name, t, {cols, rows}, q);
  };
  linear("token_embd.weight", vocab, d, GgmlType::kQ8_0);
  norm("output_norm.weight");
  for (int64_t l = 0; l < n_layer; ++l) {
    const std::string b = absl::StrCat("blk.", l, ".");
    norm(b + "attn_norm.weight");
    norm(b + "ffn_norm.weight");
    linear(b + "attn_q.weight", n_head * hd, d, type);
    linear(b + "attn_k.weight", n_head_kv * hd, d, type);
    linear(b + "attn_v.weight", n_head_kv * hd, d, type);
    linear(b + "attn_output.weight", d, n_head * hd, type);
    linear(b + "ffn_gate.weight", n_ff, d, type);
    linear(b + "ffn_up.weight", n_ff, d, type);
    linear(b + "ffn_down.weight", d, n_ff, type);
  }
  absl::Status s = w.WriteTo(out);
  if (!s.ok()) return Fail(s.ToString());
  std::printf("random_gguf: %s: %lld layers, embd %lld, ff %lld, heads %lld/%lld, vocab %lld, %s\n", out.c_str(),
              static_cast<long long>(n_layer), static_cast<long long>(d), static_cast<long long>(n_ff),
              static_cast<long long>(n_head), static_cast<long long>(n_head_kv), static_cast<long long>(vocab),
              GetGgmlTypeTraits(type).name);
  return 0;
}

}  // namespace
}  // namespace ingot

int main(int argc, char** argv) {
  using ingot::GgmlType;
  if (argc >= 4 && !std::strcmp(argv[1], "--strip")) return ingot::Strip(argv[2], argv[3]);
  if (argc >= 4 && !std::strcmp(argv[1], "--fill")) {
    GgmlType type = GgmlType::kQ4_1;
    uint32_t seed = 1;
    const ingot::Shape* shape = nullptr;
    static const ingot::Shape kLlama2_7b = {32, 4096, 11008, 32, 32};
    // A dry run's stand-in for it (tests/gpu/bench_7b.sh BENCH_DRY_RUN=1): every
    // dimension a multiple of 256, so every type and group size the benchmark uses fits.
    static const ingot::Shape kMini = {2, 512, 1024, 8, 8};
    for (int i = 4; i + 1 < argc; i += 2) {
      const std::string flag = argv[i], v = argv[i + 1];
      if (flag == "--seed") seed = static_cast<uint32_t>(std::atoi(v.c_str()));
      if (flag == "--shape") {
        if (v != "llama2-7b" && v != "mini") {
          std::fprintf(stderr, "random_gguf: --shape %s: llama2-7b or mini\n", v.c_str());
          return 2;
        }
        shape = v == "mini" ? &kMini : &kLlama2_7b;
      }
      if (flag == "--type") {
        for (uint32_t t = 0; t < 40; ++t) {
          if (ingot::GetGgmlTypeTraits(t).supported && v == ingot::GetGgmlTypeTraits(t).name) type = static_cast<GgmlType>(t);
        }
      }
    }
    return ingot::Fill(argv[2], argv[3], type, seed, shape);
  }
  std::fprintf(stderr,
               "usage: random_gguf --strip MODEL.gguf META.gguf\n"
               "       random_gguf --fill META.gguf OUT.gguf [--type q4_1] [--seed N] [--shape llama2-7b|mini]\n");
  return 2;
}
