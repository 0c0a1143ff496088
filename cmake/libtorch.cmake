# libtorch from the PyPI wheel (torch==2.11.0, a CUDA 13.0 build that carries the C++
# distribution), installed by scripts/setup_torch.sh into .venv-torch, or wherever
# INGOT_TORCH_DIR points (a site-packages/torch folder: a GPU host's own torch).
#
# Linked as imported libraries rather than through find_package(Torch): TorchConfig
# enables the CUDA language and defines a dummy protobuf target, which clashes with
# gRPC's. Only the ATen translation units see its headers (target ingot_libtorch is
# linked PRIVATE by kernels/torch).
set(INGOT_TORCH_VERSION 2.11.0)
if(NOT INGOT_TORCH_DIR)
  file(GLOB _torch_dirs ${PROJECT_SOURCE_DIR}/.venv-torch/lib/python3*/site-packages/torch)
  list(GET _torch_dirs 0 _torch_dir)
  set(INGOT_TORCH_DIR ${_torch_dir} CACHE PATH "site-packages/torch of a torch ${INGOT_TORCH_VERSION} install")
endif()
if(NOT EXISTS ${INGOT_TORCH_DIR}/include/ATen/ATen.h OR NOT EXISTS ${INGOT_TORCH_DIR}/lib/libtorch_cpu.so)
  message(FATAL_ERROR "INGOT_TORCH is on but no libtorch was found at '${INGOT_TORCH_DIR}': run "
    "scripts/setup_torch.sh (or pass -DINGOT_TORCH_DIR=.../site-packages/torch, or -DINGOT_TORCH=OFF)")
endif()
file(READ ${INGOT_TORCH_DIR}/version.py _torch_version_py)
string(REGEX MATCH "__version__ = '([^']+)'" _ ${_torch_version_py})
message(STATUS "libtorch ${CMAKE_MATCH_1} at ${INGOT_TORCH_DIR}")
if(NOT CMAKE_MATCH_1 MATCHES "^${INGOT_TORCH_VERSION}")
  message(FATAL_ERROR "libtorch ${CMAKE_MATCH_1} found; ingot pins ${INGOT_TORCH_VERSION}")
endif()

add_library(ingot_libtorch INTERFACE)
target_include_directories(ingot_libtorch SYSTEM INTERFACE ${INGOT_TORCH_DIR}/include
  ${INGOT_TORCH_DIR}/include/torch/csrc/api/include)
target_compile_options(ingot_libtorch INTERFACE -D_GLIBCXX_USE_CXX11_ABI=1)
set(_torch_libs ${INGOT_TORCH_DIR}/lib/libtorch_cpu.so ${INGOT_TORCH_DIR}/lib/libc10.so)
# The wheel's CUDA runtime libraries (nvidia-cuda-runtime/-cupti wheels, or the full
# torch install) sit beside torch/ in site-packages/nvidia/*/lib.
get_filename_component(_site ${INGOT_TORCH_DIR} DIRECTORY)
file(GLOB _nvidia_libs ${_site}/nvidia/*/lib)
set(_link_dirs ${INGOT_TORCH_DIR}/lib ${_nvidia_libs})
list(JOIN _link_dirs ":" _rpath_link)
if(INGOT_CUDA)
  find_package(CUDAToolkit REQUIRED)
  # libtorch_cuda is loaded for its kernels and allocator (registered at load time), not
  # for symbols this code names: keep it even under --as-needed. Its own dependencies
  # (cuBLAS, cuDNN, NCCL...) are the GPU host's; they need not exist at link time here.
  list(APPEND _torch_libs -Wl,--no-as-needed ${INGOT_TORCH_DIR}/lib/libtorch_cuda.so
    ${INGOT_TORCH_DIR}/lib/libc10_cuda.so -Wl,--as-needed CUDA::cudart)
  target_link_options(ingot_libtorch INTERFACE -Wl,--allow-shlib-undefined)
  target_include_directories(ingot_libtorch SYSTEM INTERFACE ${CUDAToolkit_INCLUDE_DIRS})
endif()
target_link_libraries(ingot_libtorch INTERFACE ${_torch_libs})
target_link_options(ingot_libtorch INTERFACE -Wl,-rpath-link,${_rpath_link})
