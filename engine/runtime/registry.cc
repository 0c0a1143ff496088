#include "engine/runtime/registry.h"

#include <malloc.h>

#include "absl/strings/str_cat.h"

namespace ingot {

// Started in the body: every member the reaper reads is constructed by then.
Registry::Registry() { reaper_ = std::thread([this] { ReapLoop(); }); }

Registry::~Registry() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_reaper_ = true;
  }
  reap_cv_.notify_all();
  reaper_.join();
}

void Registry::ReapLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_reaper_) {
    if (draining_.empty()) {
      reap_cv_.wait(lock, [this] { return stop_reaper_ || !draining_.empty(); });
    } else {
      reap_cv_.wait_for(lock, kReapPoll);
    }
    if (stop_reaper_) break;
    // Idle schedulers and their models leave the lists here and are destroyed outside
    // the lock (a scheduler's destructor joins its thread).
    std::vector<std::unique_ptr<Scheduler>> done;
    std::vector<std::shared_ptr<const LoadedModel>> models;
    for (size_t i = 0; i < draining_.size();) {
      if (draining_[i]->Idle()) {
        done.push_back(std::move(draining_[i]));
        models.push_back(std::move(draining_models_[i]));
        draining_.erase(draining_.begin() + static_cast<std::ptrdiff_t>(i));
        draining_models_.erase(draining_models_.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    if (done.empty()) continue;
    lock.unlock();
    done.clear();
    models.clear();  // the last reference, unless an evaluation still holds one
    // Quantized weights and KV caches are heap memory: give the freed pages back to
    // the OS now, so the process's RSS follows the gauges.
    malloc_trim(0);
    lock.lock();
  }
}

absl::Status Registry::Reserve(const std::string& name, const LoadRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  ReapLocked();
  if (entries_.count(name) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("a model named '", name,
                                                 "' is already loaded or loading; unload it first"));
  }
  Entry e;
  e.info.name = name;
  e.info.source = request.source;
  e.info.device = request.device;
  e.info.state = ModelState::kLoading;
  entries_.emplace(name, std::move(e));
  return absl::OkStatus();
}

void Registry::Abandon(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(name);
}

void Registry::Publish(const std::string& name, std::shared_ptr<const LoadedModel> model,
                       std::unique_ptr<Scheduler> scheduler) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = entries_[name];
  e.info = model->info;
  e.info.state = ModelState::kReady;
  e.model = std::move(model);
  e.scheduler = std::move(scheduler);
}

absl::Status Registry::Unload(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  ReapLocked();
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' is not loaded"));
  }
  if (it->second.info.state == ModelState::kLoading) {
    return absl::FailedPreconditionError(absl::StrCat("model '", name, "' is still loading"));
  }
  it->second.scheduler->Drain();
  draining_.push_back(std::move(it->second.scheduler));
  draining_models_.push_back(std::move(it->second.model));
  entries_.erase(it);
  reap_cv_.notify_all();
  return absl::OkStatus();
}

absl::Status Registry::Replace(const std::string& name, std::shared_ptr<const LoadedModel> model,
                               std::unique_ptr<Scheduler> scheduler) {
  std::lock_guard<std::mutex> lock(mu_);
  ReapLocked();
  auto it = entries_.find(name);
  if (it == entries_.end() || it->second.info.state != ModelState::kReady) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' was unloaded while it was being quantized"));
  }
  Entry& e = it->second;
  e.scheduler->Drain();
  draining_.push_back(std::move(e.scheduler));
  draining_models_.push_back(std::move(e.model));
  e.info = model->info;
  e.info.state = ModelState::kReady;
  e.model = std::move(model);
  e.scheduler = std::move(scheduler);
  reap_cv_.notify_all();
  return absl::OkStatus();
}

void Registry::ReapLocked() {
  for (size_t i = 0; i < draining_.size();) {
    if (draining_[i]->Idle()) {
      draining_.erase(draining_.begin() + i);  // joins its thread
      draining_models_.erase(draining_models_.begin() + i);
    } else {
      ++i;
    }
  }
}

absl::StatusOr<Registry::Ready> Registry::Find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' is not loaded"));
  }
  if (it->second.info.state != ModelState::kReady) {
    return absl::FailedPreconditionError(absl::StrCat("model '", name, "' is still loading"));
  }
  return Ready{it->second.model, it->second.scheduler.get()};
}

ModelInfo Registry::Describe(const Entry& e) const {
  ModelInfo info = e.info;
  if (e.scheduler != nullptr) {
    info.kv_cache_bytes = e.scheduler->KvCacheBytes();
    const Scheduler::KvStats kv = e.scheduler->Kv();
    info.kv_blocks_total = kv.total_blocks;
    info.kv_blocks_used = kv.used_blocks;
    info.kv_blocks_cached = kv.cached_blocks;
    info.prefix_cache_query_tokens = kv.prefix_query_tokens;
    info.prefix_cache_hit_tokens = kv.prefix_hit_tokens;
    info.kv_preemptions = kv.preemptions;
    info.requests_waiting = e.scheduler->Waiting();
    info.requests_running = e.scheduler->Running() - info.requests_waiting;
    // e.info.bytes_resident holds the weights as placed (PlaceModel): the host weights
    // on cpu (plus a backend's copies), the uploaded weights on a GPU.
    info.bytes_resident = e.info.bytes_resident + info.kv_cache_bytes;
  }
  return info;
}

std::vector<ModelInfo> Registry::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ModelInfo> out;
  for (const auto& [name, e] : entries_) out.push_back(Describe(e));
  return out;
}

absl::StatusOr<ModelInfo> Registry::Get(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' is not loaded"));
  }
  return Describe(it->second);
}

int64_t Registry::BytesOnDevice(const std::string& device) const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t total = 0;
  for (const auto& [name, e] : entries_) {
    if (e.info.device == device) total += Describe(e).bytes_resident;
  }
  for (size_t i = 0; i < draining_.size(); ++i) {
    if (draining_models_[i]->info.device == device) {
      total += draining_models_[i]->info.weight_bytes + draining_[i]->KvCacheBytes();
    }
  }
  return total;
}

int Registry::Running(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& [model_name, e] : entries_) {
    if ((name.empty() || name == model_name) && e.scheduler) n += e.scheduler->Running();
  }
  if (name.empty()) {
    for (const auto& s : draining_) n += s->Running();
  }
  return n;
}

std::vector<std::pair<std::string, int>> Registry::RunningByModel() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, int> by_name;
  for (const auto& [name, e] : entries_) {
    if (e.scheduler) by_name[name] += e.scheduler->Running();
  }
  for (size_t i = 0; i < draining_.size(); ++i) {
    by_name[draining_models_[i]->info.name] += draining_[i]->Running();
  }
  return {by_name.begin(), by_name.end()};
}

void Registry::CancelAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, e] : entries_) {
    if (e.scheduler) e.scheduler->CancelAll();
  }
  for (auto& s : draining_) s->CancelAll();
}

void Registry::Shutdown() {
  std::map<std::string, Entry> entries;
  std::vector<std::unique_ptr<Scheduler>> draining;
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries.swap(entries_);
    draining.swap(draining_);
    draining_models_.clear();
  }
  // Destructors stop and join outside the lock (their callbacks may call back in).
}

}  // namespace ingot
