// The models of the config: loaded (and quantized when configured) at start in order,
// with their pinned / keep_alive policy, which the engine's registry enforces; and the
// return of evictable ones: unloaded after keep_alive idle or under memory pressure,
// loaded again by the next request that names them, as Ollama does.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/config.h"

namespace ingot {
class Engine;
}  // namespace ingot

namespace ingot::server {

class Metrics;

class ModelKeeper {
 public:
  ModelKeeper(Engine* engine, Metrics* metrics, std::vector<ModelConfig> models);
  ~ModelKeeper();

  // Loads (and quantizes) every configured model in order; the first failure is
  // returned naming the model's entry.
  absl::Status LoadAll();
  // Told when a model is loaded or unloaded here (health service).
  void SetHealthHook(std::function<void(const std::string&, bool)> hook);

  // An evictable configured model that is not loaded is loaded again; the caller
  // waits (concurrent callers share the one load). OK for any other name.
  absl::Status EnsureLoaded(const std::string& model);

 private:
  using Clock = std::chrono::steady_clock;
  absl::Status LoadOne(const ModelConfig& m);
  const ModelConfig* Find(const std::string& name) const;

  Engine* engine_;
  Metrics* metrics_;
  const std::vector<ModelConfig> models_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> loading_;
  std::function<void(const std::string&, bool)> health_hook_;
};

}  // namespace ingot::server
