// The forward pass placed on each backend row gives the native row's result: tiny
// checkpoints of every layout family through torch on the CPU (logits, NMSE bound),
// and the default model's teacher-forced greedy steps (llama.cpp's own continuations,
// tests/data/llama/greedy.json) with the argmax compared at every step; a disagreement
// is allowed only where native's top-2 margin is a near-tie, and is counted.
#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/formats/gguf.h"
#include "engine/model/llama.h"
#include "engine/quant/quantizers.h"
#include "kernels/torch/weight_only_layout.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/thread_pool.h"
#include "nlohmann/json.hpp"
#include "tests/quant/model_util.h"
#include "tests/test_util.h"

namespace ingot {
namespace {

using ::ingot::testing::DefaultModelPath;
using ::ingot::testing::ReadJson;
using ::ingot::testing::SourcePath;
using testing_util::FormatsDataDir;
using testing_util::LoadHf;
using testing_util::Logits;

const kernels::Backend* Torch() { return kernels::FindBackend("torch"); }

// Where the torch row is tested: cpu here; tests/gpu/run.sh sets
// INGOT_PLACEMENT_DEVICE=cuda:0 (bf16 compute there: looser bounds).
kernels::Device TestDevice() {
  const char* env = std::getenv("INGOT_PLACEMENT_DEVICE");
  absl::StatusOr<kernels::Device> d = kernels::ParseDevice(env != nullptr ? env : "cpu");
  return d.ok() ? *d : kernels::Device{};
}
bool OnGpu() { return TestDevice().kind == kernels::DeviceKind::kCuda; }

double Nmse(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return num / den;
}

// The model with every linear layer dequantized to dense f32: the native row then runs
// exact f32 dot products (no activation quantization), the reference the torch row is
// held to.
std::unique_ptr<LlamaModel> DenseCopy(const LlamaModel& m) {
  LlamaWeights dense = m.weights();
  for (const LinearModuleRef& ref : dense.LinearModules()) {
    const std::vector<float> w = kernels::DequantizeAll(dense.linear(ref));
    auto q = quant::QuantizeDense(w.data(), ref.rows, ref.cols, GgmlType::kF32);
    EXPECT_TRUE(q.ok());
    auto owner = std::make_shared<quant::QuantizedWeight>(std::move(*q));
    dense.SetLinear(ref, owner->view, "f32", owner->bytes(), owner);
  }
  return std::make_unique<LlamaModel>(std::move(dense));
}

TEST(Placement, TinyCheckpointsOnTorchCpuMatchNative) {
  if (Torch() == nullptr) GTEST_SKIP() << "built without the torch backend";
  // dense f32 llama (interleaved GGUF-style rope is covered by the default model
  // below), qwen2 (q/k/v biases, neox rope), and quantized layouts: NF4, GPTQ act-order
  // (gathered input order), MLX 4-bit (int4 with a float bias), LLM.int8 (int8 rows).
  for (const char* dir : {"hf-f32", "qwen2-f32", "llama-tied", "bnb-nf4", "gptq-4bit-g32-actorder", "mlx-4bit-g32",
                          "bnb-int8", "hqq-2bit-g32"}) {
    SCOPED_TRACE(dir);
    auto native = LoadHf(FormatsDataDir() + "/" + dir);
    auto placed = LoadHf(FormatsDataDir() + "/" + dir);
    ASSERT_TRUE(native.ok() && placed.ok()) << native.status() << placed.status();
    ASSERT_TRUE(placed->model->Place(*Torch(), TestDevice()).ok());
    EXPECT_STREQ(placed->model->backend().name, "torch");
    EXPECT_GT(placed->model->placement().bytes, 0);
    const std::vector<int32_t> tokens = {1, 5, 9, 2, 7, 3, 11, 4, 6, 8};
    const std::vector<float> a = Logits(*native->model, tokens), b = Logits(*placed->model, tokens);
    const std::vector<float> exact = Logits(*DenseCopy(*native->model), tokens);
    ASSERT_EQ(a.size(), b.size());
    // Against the exact (dense f32) forward: the torch row is exact in f32 where it
    // keeps dense or dequantized weights, and rounds activations to bf16 in its int4/int8
    // kernels (and everywhere on CUDA); native's own integer paths round activations to
    // 8 bits (shown for comparison).
    bool weight_only_kernels = false;
    for (const auto& l : placed->model->placement().layers) {
      for (const auto& w : l.w) weight_only_kernels |= w.representation.rfind("int", 0) == 0;
    }
    const double bound = OnGpu() ? 5e-3 : weight_only_kernels ? 2e-4 : 1e-9;
    EXPECT_LE(Nmse(b, exact), bound);
    std::printf("[ placement ] %-24s logits NMSE vs exact f32: torch:%s %.2e (bound %.0e), native %.2e\n", dir,
                TestDevice().Name().c_str(), Nmse(b, exact), bound, Nmse(a, exact));
  }
}

TEST(Placement, ReplacingAWeightReturnsTheModelToNative) {
  if (Torch() == nullptr) GTEST_SKIP() << "built without the torch backend";
  auto hf = LoadHf(FormatsDataDir() + "/hf-f32");
  ASSERT_TRUE(hf.ok());
  ASSERT_TRUE(hf->model->Place(*Torch(), kernels::Device{}).ok());
  LlamaWeights& w = hf->model->mutable_weights();
  const auto modules = w.LinearModules();
  w.SetLinear(modules[0], w.linear(modules[0]), "f32", 0, nullptr);
  EXPECT_STREQ(hf->model->backend().name, "native");
  EXPECT_EQ(hf->model->NewKvCache()->backend().name, std::string("native"));
}

TEST(Placement, UnavailableDevicesAreRefused) {
  auto hf = LoadHf(FormatsDataDir() + "/hf-f32");
  ASSERT_TRUE(hf.ok());
  const absl::Status s = hf->model->Place(kernels::NativeBackend(), kernels::Device{kernels::DeviceKind::kCuda, 0});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  if (Torch() != nullptr && !kernels::BuiltWithCuda()) {
    const absl::Status t = hf->model->Place(*Torch(), kernels::Device{kernels::DeviceKind::kCuda, 0});
    EXPECT_EQ(t.code(), absl::StatusCode::kFailedPrecondition) << t;
    EXPECT_NE(t.message().find("built without CUDA"), std::string::npos) << t;
  }
  EXPECT_STREQ(hf->model->backend().name, "native");  // a refused placement changes nothing
}

TEST(Placement, DefaultModelGreedyOnTorchCpuAgreesWithNative) {
  if (Torch() == nullptr) GTEST_SKIP() << "built without the torch backend";
  if (!std::filesystem::exists(DefaultModelPath())) GTEST_SKIP() << "default model missing";
  auto fa = gguf::File::Open(DefaultModelPath()), fb = gguf::File::Open(DefaultModelPath());
  ASSERT_TRUE(fa.ok() && fb.ok());
  auto native = testing_util::GgufModel(std::move(*fa)), torch = testing_util::GgufModel(std::move(*fb));
  ASSERT_TRUE(native.ok() && torch.ok());
  ASSERT_TRUE((*torch)->Place(*Torch(), TestDevice()).ok());
  kernels::ThreadPool pool(2);
  const auto golden = ReadJson("tests/data/llama/greedy.json");
  {  // every position of the first prompts against the exact (dense f32) forward
    std::vector<int32_t> prompt;
    for (int g = 0; g < 3; ++g) {
      for (int32_t t : golden["generations"][g]["prompt_tokens"].get<std::vector<int32_t>>()) prompt.push_back(t);
    }
    const std::vector<float> exact = Logits(*DenseCopy(**native), prompt);
    const double e_native = Nmse(Logits(**native, prompt), exact), e_torch = Nmse(Logits(**torch, prompt), exact);
    std::printf("[ placement ] default model, %zu positions: logits NMSE vs exact f32: native %.2e, torch:%s %.2e\n",
                prompt.size(), e_native, TestDevice().Name().c_str(), e_torch);
    EXPECT_LE(e_torch, OnGpu() ? 2e-2 : 2 * e_native);
  }
  // A disagreement is a near-tie when native's top-2 margin is within how far an 8-bit
  // activation engine's margins stray from the exact forward: llama.cpp's own, measured
  // by the golden's generator against a float64 forward (peer_check.margin_error.max).
  const float tie = golden["peer_check"]["margin_error"]["max"].get<float>();
  const int vocab = (*native)->config().vocab_size;
  int steps = 0, disagreements = 0;
  float worst_margin_disagreeing = 0;
  std::vector<double> nmse;
  // Every third generation (6 of 18, ~250 steps): raw and chat prompts, 30 s here.
  for (size_t gi = 0; gi < golden["generations"].size(); gi += 3) {
    const auto& g = golden["generations"][gi];
    const auto prompt = g["prompt_tokens"].get<std::vector<int32_t>>();
    auto ca = (*native)->NewKvCache(), cb = (*torch)->NewKvCache();
    const int32_t total = static_cast<int32_t>(prompt.size() + g["steps"].size() + 1);
    ASSERT_TRUE(ca->Reserve(total).ok() && cb->Reserve(total).ok());
    ForwardWorkspace wa, wb;
    std::vector<float> la, lb;
    std::vector<BatchToken> ba, bb;
    for (size_t i = 0; i < prompt.size(); ++i) {
      ba.push_back({prompt[i], static_cast<int32_t>(i), ca.get(), i + 1 == prompt.size()});
      bb.push_back({prompt[i], static_cast<int32_t>(i), cb.get(), i + 1 == prompt.size()});
    }
    ASSERT_TRUE((*native)->Forward(ba, pool, wa, &la).ok());
    ASSERT_TRUE((*torch)->Forward(bb, pool, wb, &lb).ok());
    int32_t pos = static_cast<int32_t>(prompt.size());
    for (const auto& step : g["steps"]) {
      const int ia = static_cast<int>(std::max_element(la.begin(), la.end()) - la.begin());
      const int ib = static_cast<int>(std::max_element(lb.begin(), lb.end()) - lb.begin());
      nmse.push_back(Nmse(lb, la));
      if (ia != ib) {
        ++disagreements;
        const float margin = la[ia] - la[ib];
        worst_margin_disagreeing = std::max(worst_margin_disagreeing, margin);
        EXPECT_LT(margin, tie) << "torch picked " << ib << " where native's " << ia << " leads by " << margin;
      }
      ++steps;
      const int want = step["id"].get<int>();
      ASSERT_TRUE((*native)->Forward({{want, pos, ca.get(), true}}, pool, wa, &la).ok());
      ASSERT_TRUE((*torch)->Forward({{want, pos, cb.get(), true}}, pool, wb, &lb).ok());
      ++pos;
      ASSERT_EQ(la.size(), static_cast<size_t>(vocab));
    }
  }
  std::sort(nmse.begin(), nmse.end());
  const double median = nmse[nmse.size() / 2], worst = nmse.back();
  std::printf("[ placement ] default model (%s): %d teacher-forced steps, torch:%s argmax differs from native at %d "
              "(largest native margin there %.3f, tie bound %.2f); logits NMSE torch vs native median %.2e, worst %.2e\n",
              DefaultModelPath().c_str(), steps, TestDevice().Name().c_str(), disagreements,
              worst_margin_disagreeing, tie, median, worst);
  EXPECT_GT(steps, 200);
  // Both rows round activations (native to 8 bits, torch to bf16 in its int4 kernels),
  // so they differ by more than either differs from the exact forward.
  EXPECT_LE(median, OnGpu() ? 2e-2 : 1e-2);
  EXPECT_LE(disagreements, steps / 20);
}

// CUDA graphs: with $INGOT_CUDA_GRAPHS=1 a decode step of every batch size is run
// eagerly twice, then recorded once and replayed from then on (torch_row.h). Three
// sequences share one pool and decode teacher-forced (each step's token fixed, so the two
// runs see the same inputs) at batch sizes 3, 2 and 1, with a prefill between that grows
// the step buffers (which drops the recordings); the logits of the replayed steps must be
// those of the same steps run eagerly through the same kernels (ingot's paged attention,
// $INGOT_CUDA_ATTENTION=ingot), and the counters must show graphs were captured and
// replayed. CUDA only: tests/gpu/run.sh runs it on cuda:0.
TEST(Placement, CudaGraphStepsMatchEagerSteps) {
  if (Torch() == nullptr || !OnGpu()) GTEST_SKIP() << "needs the torch row on a CUDA device (tests/gpu/run.sh)";
  if (!std::filesystem::exists(DefaultModelPath())) GTEST_SKIP() << "no model at " << DefaultModelPath();
  auto file = gguf::File::Open(DefaultModelPath());
  ASSERT_TRUE(file.ok());
  auto model = testing_util::GgufModel(std::move(*file));
  ASSERT_TRUE(model.ok());
  ASSERT_TRUE((*model)->Place(*Torch(), TestDevice()).ok());
  kernels::ThreadPool pool(2);
  setenv("INGOT_CUDA_ATTENTION", "ingot", 1);
  const int vocab = (*model)->config().vocab_size;
  // One run of the schedule: every step's logits, in order.
  auto run = [&](bool graphs) {
    if (graphs) {
      setenv("INGOT_CUDA_GRAPHS", "1", 1);
    } else {
      unsetenv("INGOT_CUDA_GRAPHS");
    }
    std::vector<std::vector<float>> out;
    auto kv = (*model)->NewKvPool(kernels::KvDtype::kF16, 64);
    EXPECT_TRUE(kv.ok());
    if (!kv.ok()) return out;
    ForwardWorkspace ws;  // its backend workspace reads $INGOT_CUDA_GRAPHS when made
    std::vector<std::unique_ptr<KvCache>> caches;
    std::vector<int32_t> pos;
    for (int s = 0; s < 3; ++s) {
      caches.push_back(std::make_unique<KvCache>(*kv));
      EXPECT_TRUE(caches.back()->Reserve(200).ok());
      pos.push_back(0);
    }
    auto step = [&](std::vector<BatchToken> batch) {
      std::vector<float> logits;
      EXPECT_TRUE((*model)->Forward(batch, pool, ws, &logits).ok());
      out.push_back(std::move(logits));
    };
    auto decode = [&](int seqs, int steps) {
      for (int k = 0; k < steps; ++k) {
        std::vector<BatchToken> batch;
        for (int s = 0; s < seqs; ++s) {
          batch.push_back({(17 * s + 31 * pos[s] + 5) % vocab, pos[s], caches[s].get(), true});
          ++pos[s];
        }
        step(batch);
      }
    };
    auto prefill = [&](int s, int tokens) {
      std::vector<BatchToken> batch;
      for (int t = 0; t < tokens; ++t) {
        batch.push_back({(13 * s + 7 * t + 1) % vocab, pos[s], caches[s].get(), t + 1 == tokens});
        ++pos[s];
      }
      step(batch);
    };
    for (int s = 0; s < 3; ++s) prefill(s, 5);
    decode(3, 6);      // 2 eager, 1 recorded, 3 replayed
    decode(2, 5);
    prefill(2, 40);    // grows the step buffers: the recordings are dropped
    decode(3, 5);
    decode(1, 5);
    return out;
  };
  const kernels::GraphCounts before = kernels::CudaGraphCounts();
  const std::vector<std::vector<float>> eager = run(false);
  const kernels::GraphCounts mid = kernels::CudaGraphCounts();
  const std::vector<std::vector<float>> graphed = run(true);
  const kernels::GraphCounts after = kernels::CudaGraphCounts();
  unsetenv("INGOT_CUDA_GRAPHS");
  unsetenv("INGOT_CUDA_ATTENTION");
  EXPECT_EQ(mid.replayed, before.replayed) << "graphs were used with $INGOT_CUDA_GRAPHS unset";
  EXPECT_EQ(after.failed, mid.failed) << "a recording failed (see the step's ABORTED message)";
  // Recorded: 3-, 2-, 3- (again, after the prefill) and 1-token steps.
  EXPECT_EQ(after.captured - mid.captured, 4);
  // Replayed: every decode step after the warm-up ones, the recording's own run included.
  EXPECT_EQ(after.replayed - mid.replayed, (6 - 2) + (5 - 2) + (5 - 2) + (5 - 2));
  ASSERT_EQ(eager.size(), graphed.size());
  double worst = 0;
  for (size_t i = 0; i < eager.size(); ++i) {
    ASSERT_EQ(eager[i].size(), graphed[i].size()) << "step " << i;
    if (eager[i].empty()) continue;
    worst = std::max(worst, Nmse(graphed[i], eager[i]));
  }
  std::printf("[ placement ] CUDA graphs: %zu steps, %lld recorded, %lld replayed; logits NMSE vs eager worst %.2e\n",
              eager.size(), static_cast<long long>(after.captured - mid.captured),
              static_cast<long long>(after.replayed - mid.replayed), worst);
  // The same kernels on the same inputs; only cuBLAS may pick another algorithm under capture.
  EXPECT_LE(worst, 1e-6);
}

}  // namespace
}  // namespace ingot
