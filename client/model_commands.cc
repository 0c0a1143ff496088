// models, load, unload, info, tokenize.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/client.h"

namespace ingot::client {
namespace {

const char* StateName(v1::ModelState state) {
  switch (state) {
    case v1::MODEL_STATE_LOADING: return "loading";
    case v1::MODEL_STATE_READY: return "ready";
    case v1::MODEL_STATE_UNLOADING: return "unloading";
    case v1::MODEL_STATE_FAILED: return "failed";
    case v1::MODEL_STATE_GONE: return "gone";
    default: return "unknown";
  }
}

std::string HumanCount(int64_t n) {
  if (n >= 1'000'000'000) return absl::StrFormat("%.2fB", n / 1e9);
  if (n >= 1'000'000) return absl::StrFormat("%.1fM", n / 1e6);
  if (n >= 1'000) return absl::StrFormat("%.1fK", n / 1e3);
  return absl::StrFormat("%d", n);
}

// Escapes control characters and invalid UTF-8 bytes of a token piece for display.
std::string ShowPiece(const std::string& piece) {
  std::string out;
  for (unsigned char c : piece) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7F) out += absl::StrFormat("\\x%02x", c);
    else out.push_back(static_cast<char>(c));
  }
  return out;
}

}  // namespace

void PrintModel(const v1::ModelInfo& m) {
  std::cout << absl::StrFormat(
      "name:          %s\nsource:        %s\nformat:        %s\narchitecture:  %s\n"
      "parameters:    %s (%d)\ndevice:        %s\nstate:         %s\n"
      "context:       %d tokens\nvocabulary:    %d tokens\nlayers:        %d\n"
      "chat template: %s\nresident:      %s (weights %s, KV cache %s)\n",
      m.name(), m.source(), m.format(), m.architecture(), HumanCount(m.parameter_count()),
      m.parameter_count(), m.device(), StateName(m.state()), m.context_length(),
      m.vocab_size(), m.layers(), m.has_chat_template() ? "yes" : "no",
      HumanBytes(m.bytes_resident()), HumanBytes(m.weight_bytes()),
      HumanBytes(m.kv_cache_bytes()));
  if (!m.backend().empty()) {
    std::cout << "backend:       " << m.backend()
              << (m.device_weight_bytes() > 0 ? absl::StrCat(" (", HumanBytes(m.device_weight_bytes()), " placed on ",
                                                             m.device(), ")")
                                              : std::string())
              << "\n";
  }
  for (const std::string& r : m.device_representations()) std::cout << "  on device:   " << r << "\n";
  if (m.kv_blocks_total() > 0) {
    std::cout << absl::StrFormat(
        "KV cache:      %s, %s per token, %d blocks of %d tokens (%d in use, %d cached)\n"
        "serving:       up to %d sequences per step, prefix cache %s (%d of %d prompt tokens reused), "
        "%d waiting, %d running, %d preemptions\n",
        m.kv_cache_dtype(), HumanBytes(m.kv_bytes_per_token()), m.kv_blocks_total(), m.kv_block_tokens(),
        m.kv_blocks_used(), m.kv_blocks_cached(), m.max_sequences(), m.prefix_cache() ? "on" : "off",
        m.prefix_cache_hit_tokens(), m.prefix_cache_query_tokens(), m.requests_waiting(), m.requests_running(),
        m.kv_preemptions());
  }
  if (!m.quantization().empty()) std::cout << "quantization:  " << m.quantization() << "\n";
  if (!m.quantization_note().empty()) std::cout << "note:          " << m.quantization_note() << "\n";
  if (!m.loading_strategy().empty()) {
    std::cout << "loading:       " << m.loading_strategy() << ", dtype " << m.dtype() << ", file-backed "
              << HumanBytes(m.file_backed_bytes())
              << (m.max_memory_bytes() > 0 ? ", max_memory " + HumanBytes(m.max_memory_bytes()) : "")
              << (m.offload_to_cpu() ? ", offload_to_cpu" : "") << "\n";
  }
  if (!m.loading_note().empty()) std::cout << "loading note:  " << m.loading_note() << "\n";
  std::cout << "eviction:      " << (m.pinned() ? "pinned" : "unpinned")
            << (m.keep_alive_seconds() > 0 ? absl::StrFormat(", keep_alive %.0f s", m.keep_alive_seconds()) : "")
            << absl::StrFormat(", idle %.1f s\n", m.idle_seconds());
  if (!m.error().empty()) std::cout << "error:         " << m.error() << "\n";
  if (m.tensor_kinds_size() > 0) {
    std::cout << absl::StrFormat("  %-10s %-20s %8s %12s %12s\n", "KIND", "REPRESENTATION",
                                 "TENSORS", "PARAMETERS", "BYTES");
    for (const v1::TensorKindInfo& k : m.tensor_kinds()) {
      std::cout << absl::StrFormat("  %-10s %-20s %8d %12s %12s\n", k.kind(),
                                   k.representation(), k.tensors(), HumanCount(k.parameters()),
                                   HumanBytes(k.bytes()));
    }
  }
}


int RunModels(Connection& conn, bool json) {
  auto stub = v1::ModelService::NewStub(conn.channel);
  auto context = conn.NewContext();
  v1::ListModelsResponse response;
  grpc::Status status = stub->ListModels(context.get(), v1::ListModelsRequest(), &response);
  if (!status.ok()) return ReportError(status);
  if (json) {
    PrintJsonLine(response);
    return 0;
  }
  std::cout << absl::StrFormat("%-24s %-8s %-8s %-9s %-10s %-8s %-8s %s\n", "NAME", "ARCH",
                               "DEVICE", "PARAMS", "RESIDENT", "CONTEXT", "STATE", "SOURCE");
  for (const v1::ModelInfo& m : response.models()) {
    std::cout << absl::StrFormat("%-24s %-8s %-8s %-9s %-10s %-8d %-8s %s\n", m.name(),
                                 m.architecture(), m.device(), HumanCount(m.parameter_count()),
                                 HumanBytes(m.bytes_resident()), m.context_length(),
                                 StateName(m.state()), m.source());
  }
  return 0;
}

namespace {

v1::LoadingStrategy StrategyOf(const std::string& name) {
  if (name == "full") return v1::LOADING_STRATEGY_FULL;
  if (name == "low_memory") return v1::LOADING_STRATEGY_LOW_MEMORY;
  if (name == "unified_memory") return v1::LOADING_STRATEGY_UNIFIED_MEMORY;
  if (name == "streaming") return v1::LOADING_STRATEGY_STREAMING;
  return v1::LOADING_STRATEGY_UNSPECIFIED;
}

v1::LoadModelRequest ToRequest(const LoadFlags& flags) {
  v1::LoadModelRequest request;
  request.set_loading_strategy(StrategyOf(flags.loading_strategy));
  for (const std::string& kv : flags.max_memory) {
    // DEVICE=BYTES; a malformed one is sent as -1 bytes so the server names it.
    const size_t eq = kv.find('=');
    int64_t bytes = -1;
    if (eq == std::string::npos || !absl::SimpleAtoi(kv.substr(eq + 1), &bytes)) bytes = -1;
    (*request.mutable_max_memory())[kv.substr(0, eq)] = bytes;
  }
  if (flags.offload_to_cpu) request.set_offload_to_cpu(true);
  request.set_dtype(flags.dtype);
  if (flags.use_safetensors) request.set_use_safetensors(true);
  if (flags.no_safetensors) request.set_use_safetensors(false);
  request.set_name(flags.name);
  request.set_source(flags.source);
  request.set_format(flags.format);
  request.set_device(flags.device);
  request.set_backend(flags.backend);
  request.set_context_length(flags.context_length);
  request.set_loading_workers(flags.workers);
  request.set_kv_cache_bytes(flags.kv_cache_bytes);
  request.set_kv_cache_dtype(flags.kv_cache_dtype);
  request.set_revision(flags.revision);
  request.set_variant(flags.variant);
  request.set_max_sequences(flags.max_sequences);
  if (flags.no_prefix_cache) request.set_prefix_cache(false);
  if (!flags.method.empty()) {
    v1::QuantizationConfig* q = request.mutable_quantization();
    q->set_method(flags.method);
    q->set_bits(flags.bits);
    q->set_group_size(flags.group_size);
    q->set_quant_type(flags.quant_type);
  }
  if (flags.pinned) request.set_pinned(true);
  if (flags.keep_alive_s >= 0) request.set_keep_alive_seconds(flags.keep_alive_s);
  return request;
}

}  // namespace

int RunLoad(Connection& conn, const LoadFlags& flags) {
  auto stub = v1::ModelService::NewStub(conn.channel);
  auto context = conn.NewContext();
  const v1::LoadModelRequest request = ToRequest(flags);
  auto reader = stub->LoadModel(context.get(), request);
  const bool tty = isatty(STDERR_FILENO);
  v1::LoadModelResponse response;
  v1::ModelInfo model;
  std::string last_stage;
  while (reader->Read(&response)) {
    if (flags.json) PrintJsonLine(response);
    const v1::LoadProgress& p = response.progress();
    if (tty) {
      constexpr int kWidth = 30;
      int filled = static_cast<int>(p.fraction() * kWidth + 0.5);
      std::fprintf(stderr, "\r[%s%s] %3d%% %-8s %-40.40s", std::string(filled, '#').c_str(),
                   std::string(kWidth - filled, ' ').c_str(),
                   static_cast<int>(p.fraction() * 100 + 0.5), p.stage().c_str(),
                   p.detail().c_str());
    } else if (p.stage() != last_stage) {
      std::fprintf(stderr, "%s %3d%%\n", p.stage().c_str(),
                   static_cast<int>(p.fraction() * 100 + 0.5));
    }
    last_stage = p.stage();
    if (response.has_model()) model = response.model();
  }
  if (tty) std::fprintf(stderr, "\n");
  grpc::Status status = reader->Finish();
  if (!status.ok()) return ReportError(status);
  if (!flags.json) {
    std::fprintf(stderr, "loaded %s in %.2f s\n", model.name().c_str(),
                 response.elapsed_seconds());
    PrintModel(model);
  }
  return 0;
}

int RunUnload(Connection& conn, const std::string& name) {
  auto stub = v1::ModelService::NewStub(conn.channel);
  auto context = conn.NewContext();
  v1::UnloadModelRequest request;
  request.set_name(name);
  v1::UnloadModelResponse response;
  grpc::Status status = stub->UnloadModel(context.get(), request, &response);
  if (!status.ok()) return ReportError(status);
  std::cout << "unloaded " << name;
  if (response.running_requests() > 0) {
    std::cout << " (" << response.running_requests() << " running requests finish first)";
  }
  std::cout << '\n';
  return 0;
}

int RunSave(Connection& conn, const std::string& name, const std::string& path, const std::string& format,
            bool overwrite, const std::vector<std::string>& variants, bool evaluate) {
  auto stub = v1::ModelService::NewStub(conn.channel);
  auto context = conn.NewContext();
  v1::SaveModelRequest request;
  request.set_name(name);
  request.set_path(path);
  request.set_format(format);
  request.set_overwrite(overwrite);
  request.set_evaluate(evaluate);
  for (const std::string& v : variants) {
    const size_t eq = v.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == v.size()) {
      std::fprintf(stderr, "--variant: '%s' is not NAME=PRESET (e.g. int4=TORCHAO_INT4)\n", v.c_str());
      return 2;
    }
    v1::SaveVariant* sv = request.add_variants();
    sv->set_name(v.substr(0, eq));
    sv->mutable_config()->set_method(v.substr(eq + 1));  // a preset name or a method
  }
  v1::SaveModelResponse response;
  grpc::Status status = stub->SaveModel(context.get(), request, &response);
  if (!status.ok()) return ReportError(status);
  std::printf("saved %s to %s (%s, %lld bytes, %.2f s)\n", name.c_str(), response.path().c_str(),
              response.format().c_str(), static_cast<long long>(response.bytes()), response.seconds());
  for (int i = 1; i < response.directories_size(); ++i) std::printf("  variant %s\n", response.directories(i).c_str());
  return 0;
}

int RunInfo(Connection& conn, const std::string& name, bool json) {
  auto stub = v1::ModelService::NewStub(conn.channel);
  auto context = conn.NewContext();
  if (!name.empty()) {
    v1::GetModelRequest request;
    request.set_name(name);
    v1::GetModelResponse response;
    grpc::Status status = stub->GetModel(context.get(), request, &response);
    if (!status.ok()) return ReportError(status);
    if (json) PrintJsonLine(response);
    else PrintModel(response.model());
    return 0;
  }
  v1::GetServerInfoResponse response;
  grpc::Status status =
      stub->GetServerInfo(context.get(), v1::GetServerInfoRequest(), &response);
  if (!status.ok()) return ReportError(status);
  if (json) {
    PrintJsonLine(response);
    return 0;
  }
  std::vector<std::string> features(response.features().begin(), response.features().end());
  std::cout << absl::StrFormat("server:   %s\nversion:  %s\nfeatures: %s\nthreads:  %d\n"
                               "models:   %d\ndevices:\n",
                               conn.server, response.version(), absl::StrJoin(features, " "),
                               response.threads(), response.models_loaded());
  for (const v1::DeviceInfo& d : response.devices()) {
    if (d.available()) {
      std::cout << absl::StrFormat("  %-8s total %s, free %s, used by models %s, backends %s\n", d.name(),
                                   HumanBytes(d.total_bytes()), HumanBytes(d.free_bytes()),
                                   HumanBytes(d.used_bytes()), absl::StrJoin(d.backends(), " "));
      std::cout << absl::StrFormat("           budget %s, free for loads %s, models: %s\n",
                                   d.budget_bytes() > 0 ? HumanBytes(d.budget_bytes()) : "none",
                                   HumanBytes(d.budget_free_bytes()),
                                   d.models().empty() ? "-" : absl::StrJoin(d.models(), ", "));
    } else {
      std::cout << absl::StrFormat("  %-8s unavailable: %s\n", d.name(), d.reason());
    }
  }
  return 0;
}

int RunTokenize(Connection& conn, const TokenizeFlags& flags) {
  auto stub = v1::GenerationService::NewStub(conn.channel);
  auto context = conn.NewContext();
  v1::TokenizeRequest request;
  request.set_model(flags.model);
  request.set_text(flags.text);
  request.set_add_special(!flags.no_special);
  request.set_parse_special(!flags.no_parse_special);
  v1::TokenizeResponse response;
  grpc::Status status = stub->Tokenize(context.get(), request, &response);
  if (!status.ok()) return ReportError(status);
  if (flags.json) {
    PrintJsonLine(response);
  } else if (flags.ids_only) {
    std::cout << absl::StrJoin(response.ids(), " ") << '\n';
  } else {
    for (int i = 0; i < response.ids_size(); ++i) {
      std::cout << absl::StrFormat("%6d  %s\n", response.ids(i),
                                   i < response.pieces_size() ? ShowPiece(response.pieces(i))
                                                              : "");
    }
  }
  return 0;
}

}  // namespace ingot::client

namespace ingot::client {

int RunPlan(Connection& conn, const LoadFlags& flags) {
  auto stub = v1::ModelService::NewStub(conn.channel);
  auto context = conn.NewContext();
  v1::PlanLoadResponse r;
  grpc::Status status = stub->PlanLoad(context.get(), ToRequest(flags), &r);
  if (!status.ok()) return ReportError(status);
  if (flags.json) {
    PrintJsonLine(r);
    return 0;
  }
  std::cout << absl::StrFormat(
      "device:     %s (backend %s)\nformat:     %s, %s parameters, context %d\n"
      "weights:    %s\nKV cache:   %s (%d blocks)\nworkspace:  %s (not counted)\ntotal:      %s\n"
      "budget:     %s, free %s\nfits:       %s\n",
      r.device(), r.backend(), r.format(), HumanCount(r.parameter_count()), r.context_length(),
      HumanBytes(r.weight_bytes()), HumanBytes(r.kv_cache_bytes()), r.kv_blocks(), HumanBytes(r.workspace_bytes()),
      HumanBytes(r.total_bytes()), r.budget_bytes() > 0 ? HumanBytes(r.budget_bytes()) : "none",
      HumanBytes(r.free_bytes()), r.fits() ? (r.evictions().empty() ? "yes" : "yes, after evicting") : "no");
  for (const v1::PlannedEviction& e : r.evictions()) {
    std::cout << absl::StrFormat("  evict %s (%s, idle %.1f s, %s)\n", e.name(), HumanBytes(e.bytes()),
                                 e.idle_seconds(), e.reason());
  }
  for (const std::string& w : r.warnings()) std::cout << "warning:    " << w << "\n";
  return r.fits() ? 0 : 1;
}

int RunWatch(Connection& conn, bool json) {
  auto stub = v1::ModelService::NewStub(conn.channel);
  auto context = conn.NewContext();  // --timeout bounds the watch; none by default
  auto reader = stub->WatchModels(context.get(), v1::WatchModelsRequest());
  v1::ModelEvent e;
  while (reader->Read(&e)) {
    if (json) {
      PrintJsonLine(e);
    } else {
      std::cout << absl::StrFormat("%.3f %-24s %-8s %-10s %-16s %12d bytes%s%s%s\n", e.time_unix_seconds(), e.name(),
                                   e.device(), StateName(e.state()), e.snapshot() ? "(now)" : e.reason(), e.bytes(),
                                   e.seconds() > 0 ? absl::StrFormat(" %.3f s", e.seconds()) : "",
                                   e.error().empty() ? "" : " error: ", e.error());
    }
    std::cout.flush();
  }
  grpc::Status status = reader->Finish();
  return status.ok() ? 0 : ReportError(status);
}

}  // namespace ingot::client
