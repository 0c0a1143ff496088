#include "kernels/cpu/cpu_features.h"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace ingot::kernels {
namespace {

// GCC's __builtin_cpu_supports checks XGETBV too: an OS that does not save the zmm
// state reports no AVX-512.
bool Detect(CpuLevel level) {
  switch (level) {
    case CpuLevel::kRef: return true;
    case CpuLevel::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case CpuLevel::kAvx512Vnni:
      return Detect(CpuLevel::kAvx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

CpuLevel DetectBest() {
  CpuLevel best = CpuLevel::kRef;
  for (CpuLevel l : {CpuLevel::kAvx2, CpuLevel::kAvx512Vnni}) {
    if (Detect(l)) best = l;
  }
  if (const char* cap = std::getenv("INGOT_CPU_LEVEL"); cap != nullptr) {
    for (CpuLevel l : {CpuLevel::kRef, CpuLevel::kAvx2, CpuLevel::kAvx512Vnni}) {
      if (std::strcmp(cap, CpuLevelName(l)) == 0 && l < best) best = l;
    }
  }
  return best;
}

}  // namespace

bool CpuHasLevel(CpuLevel level) {
  static const bool has[] = {Detect(CpuLevel::kRef), Detect(CpuLevel::kAvx2), Detect(CpuLevel::kAvx512Vnni)};
  return has[static_cast<int>(level)];
}

CpuLevel BestCpuLevel() {
  static const CpuLevel best = DetectBest();
  return best;
}

const char* CpuLevelName(CpuLevel level) {
  switch (level) {
    case CpuLevel::kRef: return "ref";
    case CpuLevel::kAvx2: return "avx2";
    case CpuLevel::kAvx512Vnni: return "avx512vnni";
  }
  return "?";
}

}  // namespace ingot::kernels
