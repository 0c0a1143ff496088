// Instruction-set levels of the CPU kernels. Every optimized kernel sits at one level,
// is chosen at run time when the CPU (and the OS, for the wider register state) has
// it, and has a plain reference that decides in its tests. Tests and benchmarks name a
// level to run a path on a machine whose best level is higher.
#pragma once

#include <cstdint>

namespace ingot::kernels {

enum class CpuLevel : uint8_t {
  kRef,         // plain C++
  kAvx2,        // AVX2 + FMA + F16C
  kAvx512Vnni,  // AVX-512 F/BW/VL/DQ + VNNI (vpdpbusd on zmm): Cascade Lake, Ice Lake and later
  kAmx,         // kAvx512Vnni + AMX-TILE/INT8 (tdpbsud) with the OS's grant: Sapphire Rapids and later
};

// Whether this CPU runs `level`'s kernels.
bool CpuHasLevel(CpuLevel level);
// The highest level this CPU runs, capped by $INGOT_CPU_LEVEL (ref, avx2, avx512vnni, amx)
// when set: read once, for comparing paths in one binary on one machine.
CpuLevel BestCpuLevel();
const char* CpuLevelName(CpuLevel level);

}  // namespace ingot::kernels
