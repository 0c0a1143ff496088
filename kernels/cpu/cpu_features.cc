#include "kernels/cpu/cpu_features.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace ingot::kernels {
namespace {

// AMX: CPUID.(7,0).EDX bits 24 (AMX-TILE) and 25 (AMX-INT8), XCR0 bits 17-18 (the OS
// manages the tile state) and Linux's per-process grant of XTILEDATA (arch_prctl
// ARCH_REQ_XCOMP_PERM, asked once; without it the first tile instruction faults). GCC 12's
// __builtin_cpu_supports does not know "amx-int8". Valgrind, which decodes neither AMX
// nor AVX-512, hides AVX-512 from CPUID, so kAmx (which needs kAvx512Vnni) is off there.
bool DetectAmx() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  if ((edx & (1u << 24)) == 0 || (edx & (1u << 25)) == 0) return false;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || (ecx & (1u << 27)) == 0) return false;  // OSXSAVE
  uint32_t xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  constexpr uint32_t kTileState = (1u << 17) | (1u << 18);  // XTILECFG, XTILEDATA
  if ((xcr0_lo & kTileState) != kTileState) return false;
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

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
    case CpuLevel::kAmx: return Detect(CpuLevel::kAvx512Vnni) && DetectAmx();
  }
  return false;
}

CpuLevel DetectBest() {
  CpuLevel best = CpuLevel::kRef;
  for (CpuLevel l : {CpuLevel::kAvx2, CpuLevel::kAvx512Vnni, CpuLevel::kAmx}) {
    if (CpuHasLevel(l)) best = l;
  }
  if (const char* cap = std::getenv("INGOT_CPU_LEVEL"); cap != nullptr) {
    for (CpuLevel l : {CpuLevel::kRef, CpuLevel::kAvx2, CpuLevel::kAvx512Vnni, CpuLevel::kAmx}) {
      if (std::strcmp(cap, CpuLevelName(l)) == 0 && l < best) best = l;
    }
  }
  return best;
}

}  // namespace

bool CpuHasLevel(CpuLevel level) {
  static const bool has[] = {Detect(CpuLevel::kRef), Detect(CpuLevel::kAvx2), Detect(CpuLevel::kAvx512Vnni),
                             Detect(CpuLevel::kAmx)};
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
    case CpuLevel::kAmx: return "amx";
  }
  return "?";
}

}  // namespace ingot::kernels
