#include "engine/runtime/registry.h"

#include <malloc.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ingot {
namespace {

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double SecondsBetween(Registry::Clock::time_point a, Registry::Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

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

void Registry::EmitLocked(ModelEvent event) const {
  event.time_unix_s = UnixNow();
  for (const auto& [id, sink] : sinks_) sink(event);
}

int Registry::Subscribe(Sink sink, std::vector<ModelInfo>* snapshot) {
  std::lock_guard<std::mutex> lock(mu_);
  if (snapshot != nullptr) {
    for (const auto& [name, e] : entries_) snapshot->push_back(Describe(e));
    for (const Draining& d : draining_) {
      if (!d.announce_gone) continue;
      ModelInfo info = d.model->info;
      info.state = ModelState::kUnloading;
      info.bytes_resident = d.bytes;
      snapshot->push_back(std::move(info));
    }
  }
  const int id = next_sink_++;
  sinks_.emplace(id, std::move(sink));
  return id;
}

void Registry::Unsubscribe(int id) {
  std::lock_guard<std::mutex> lock(mu_);
  sinks_.erase(id);
}

void Registry::TakeIdleLocked(std::vector<Draining>* done) {
  for (size_t i = 0; i < draining_.size();) {
    if (draining_[i].scheduler->Idle()) {
      done->push_back(std::move(draining_[i]));
      draining_.erase(draining_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

void Registry::UnloadIdleLocked() {
  const Clock::time_point now = Clock::now();
  std::vector<std::string> expired;
  for (auto& [name, e] : entries_) {
    if (e.info.state != ModelState::kReady) continue;
    // A running or queued request keeps the model in use until it ends (keep_alive
    // and the LRU order of evictions count from then, to within kIdlePoll).
    if (e.scheduler->Running() > 0) {
      e.last_used = now;
      continue;
    }
    if (e.info.pinned || e.info.keep_alive_s <= 0) continue;
    if (SecondsBetween(e.last_used, now) >= e.info.keep_alive_s) expired.push_back(name);
  }
  for (const std::string& name : expired) UnloadLocked(entries_.find(name), kReasonIdleTimeout);
}

void Registry::ReapLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_reaper_) {
    reap_cv_.wait_for(lock, draining_.empty() ? kIdlePoll : kReapPoll);
    if (stop_reaper_) break;
    UnloadIdleLocked();
    // Idle schedulers and their models leave the list here and are destroyed outside
    // the lock (a scheduler's destructor joins its thread).
    std::vector<Draining> done;
    TakeIdleLocked(&done);
    if (done.empty()) continue;
    std::vector<ModelEvent> gone;
    for (Draining& d : done) {
      if (d.announce_gone) {
        gone.push_back(ModelEvent{0, d.name, d.device, ModelState::kGone, d.reason, d.bytes, "", 0});
      }
    }
    lock.unlock();
    std::vector<Clock::time_point> since;
    for (const Draining& d : done) {
      if (d.announce_gone) since.push_back(d.since);
    }
    done.clear();  // the last reference to each model, unless an evaluation holds one
    // Quantized weights and KV caches are heap memory: give the freed pages back to
    // the OS now, so the process's RSS follows the gauges.
    malloc_trim(0);
    const Clock::time_point freed = Clock::now();
    lock.lock();
    for (size_t i = 0; i < gone.size(); ++i) {
      gone[i].seconds = SecondsBetween(since[i], freed);
      EmitLocked(gone[i]);
    }
  }
}

absl::Status Registry::Reserve(const std::string& name, const LoadRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(name);
  if (it != entries_.end() && it->second.info.state != ModelState::kFailed) {
    return absl::AlreadyExistsError(absl::StrCat("a model named '", name,
                                                 "' is already loaded or loading; unload it first"));
  }
  Entry e;
  e.info.name = name;
  e.info.source = request.source;
  e.info.device = request.device;
  e.info.state = ModelState::kLoading;
  e.info.pinned = request.pinned.value_or(false);
  e.info.keep_alive_s = request.keep_alive_s.value_or(0);
  e.started = e.last_used = Clock::now();
  entries_[name] = std::move(e);
  EmitLocked(ModelEvent{0, name, request.device, ModelState::kLoading, kReasonLoadRequest, 0, "", 0});
  return absl::OkStatus();
}

void Registry::Fail(const std::string& name, const absl::Status& error) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  e.info.state = ModelState::kFailed;
  e.info.error = absl::StrCat(absl::StatusCodeToString(error.code()), ": ", error.message());
  e.reserved_bytes = 0;
  e.model.reset();
  e.scheduler.reset();
  EmitLocked(ModelEvent{0, name, e.info.device, ModelState::kFailed, kReasonLoadFailed, 0, e.info.error,
                        SecondsBetween(e.started, Clock::now())});
}

void Registry::Abandon(const std::string& name, const absl::Status& error) {
  Fail(name, error);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end() || it->second.info.state != ModelState::kFailed) return;
  const std::string device = it->second.info.device;
  entries_.erase(it);
  EmitLocked(ModelEvent{0, name, device, ModelState::kGone, kReasonLoadFailed, 0, "", 0});
}

int64_t Registry::UsedLocked(const std::string& device, const std::string& except, bool idle_draining) const {
  int64_t used = 0;
  for (const auto& [name, e] : entries_) {
    if (e.info.device != device || name == except) continue;
    used += e.info.state == ModelState::kReady ? Describe(e).bytes_resident : e.reserved_bytes;
  }
  for (const Draining& d : draining_) {
    if (d.device == device && (idle_draining || !d.scheduler->Idle())) used += d.bytes;
  }
  return used;
}

AdmissionPlan Registry::PlanLocked(const std::string& name, const Admission& a) const {
  AdmissionPlan plan;
  // A ready model admitting more (quantized in place) counts its own bytes as used;
  // a loading one's own reservation is what is being asked for again.
  auto self = entries_.find(name);
  const bool self_ready = self != entries_.end() && self->second.info.state == ModelState::kReady;
  // A drained model with no stream left is freed by the reaper within kReapPoll: its
  // bytes are not in the way (an eviction just made is not counted twice).
  plan.used_bytes = UsedLocked(a.device, self_ready ? "" : name, /*idle_draining=*/false);
  if (a.budget > 0) {
    plan.free_bytes = a.budget - plan.used_bytes + a.credit;
  } else {
    // The OS already counts what ready models hold; not what loading ones will take.
    int64_t reserved = 0;
    for (const auto& [n, e] : entries_) {
      if (n != name && e.info.device == a.device && e.info.state == ModelState::kLoading) reserved += e.reserved_bytes;
    }
    plan.free_bytes = a.device_free - reserved + a.credit;
  }
  int64_t free = plan.free_bytes;
  if (a.bytes <= free) {
    plan.fits = true;
    return plan;
  }
  std::vector<std::pair<Clock::time_point, const Entry*>> idle;
  for (const auto& [n, e] : entries_) {
    if (n == name || e.info.state != ModelState::kReady || e.info.pinned || e.info.device != a.device) continue;
    if (std::find(a.keep.begin(), a.keep.end(), n) != a.keep.end()) continue;
    if (e.scheduler->Running() > 0) continue;
    idle.emplace_back(e.last_used, &e);
  }
  std::sort(idle.begin(), idle.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  const Clock::time_point now = Clock::now();
  for (const auto& [t, e] : idle) {
    const int64_t bytes = Describe(*e).bytes_resident;
    plan.evict.push_back({e->info.name, bytes, SecondsBetween(t, now)});
    free += bytes;
    if (a.bytes <= free) {
      plan.fits = true;
      return plan;
    }
  }
  return plan;
}

AdmissionPlan Registry::PlanAdmission(const std::string& name, const Admission& a) const {
  std::lock_guard<std::mutex> lock(mu_);
  return PlanLocked(name, a);
}

absl::Status Registry::Admit(const std::string& name, const Admission& a, bool reserve) {
  std::lock_guard<std::mutex> lock(mu_);
  auto self = entries_.find(name);
  if (reserve && self != entries_.end() && self->second.info.state == ModelState::kLoading &&
      a.bytes <= self->second.reserved_bytes) {
    self->second.reserved_bytes = a.bytes;  // the exact figure, within what was granted
    return absl::OkStatus();
  }
  const AdmissionPlan plan = PlanLocked(name, a);
  if (!plan.fits) {
    int64_t evictable = 0;
    for (const AdmissionPlan::Victim& v : plan.evict) evictable += v.bytes;
    return absl::ResourceExhaustedError(absl::StrCat(
        a.what, " needs ", a.bytes, " bytes on ", a.device, " but only ", std::max<int64_t>(0, plan.free_bytes),
        " bytes are free (", a.budget > 0 ? absl::StrCat("memory budget ", a.budget) : "the device's free memory",
        ", ", plan.used_bytes, " bytes used by models", evictable > 0 ? absl::StrCat(", ", evictable,
        " of them idle and evictable") : "", "); unload a model, or raise devices.", a.device,
        ".memory_budget_bytes"));
  }
  for (const AdmissionPlan::Victim& v : plan.evict) UnloadLocked(entries_.find(v.name), kReasonMemoryPressure);
  if (reserve) {
    auto it = entries_.find(name);
    if (it != entries_.end() && it->second.info.state == ModelState::kLoading) it->second.reserved_bytes = a.bytes;
  }
  return absl::OkStatus();
}

void Registry::Publish(const std::string& name, std::shared_ptr<const LoadedModel> model,
                       std::unique_ptr<Scheduler> scheduler) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = entries_[name];
  const bool pinned = e.info.pinned;
  const double keep_alive_s = e.info.keep_alive_s;
  e.info = model->info;
  e.info.state = ModelState::kReady;
  e.info.pinned = pinned;
  e.info.keep_alive_s = keep_alive_s;
  e.model = std::move(model);
  e.scheduler = std::move(scheduler);
  e.reserved_bytes = 0;
  e.last_used = Clock::now();
  const ModelInfo info = Describe(e);
  EmitLocked(ModelEvent{0, name, info.device, ModelState::kReady, kReasonLoadRequest, info.bytes_resident, "",
                        SecondsBetween(e.started, e.last_used)});
}

int64_t Registry::DrainLocked(const std::string& name, Entry& e, const std::string& reason, bool announce_gone) {
  Draining d;
  d.bytes = Describe(e).bytes_resident;
  e.scheduler->Drain();
  d.scheduler = std::move(e.scheduler);
  d.model = std::move(e.model);
  d.name = name;
  d.device = e.info.device;
  d.reason = reason;
  d.since = Clock::now();
  d.announce_gone = announce_gone;
  const int64_t bytes = d.bytes;
  draining_.push_back(std::move(d));
  return bytes;
}

void Registry::UnloadLocked(std::map<std::string, Entry>::iterator it, const std::string& reason) {
  const int64_t bytes = DrainLocked(it->first, it->second, reason, /*announce_gone=*/true);
  EmitLocked(ModelEvent{0, it->first, it->second.info.device, ModelState::kUnloading, reason, bytes, "", 0});
  entries_.erase(it);
  reap_cv_.notify_all();
}

absl::Status Registry::Unload(const std::string& name, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' is not loaded"));
  }
  if (it->second.info.state == ModelState::kLoading) {
    return absl::FailedPreconditionError(absl::StrCat("model '", name, "' is still loading"));
  }
  if (it->second.info.state == ModelState::kFailed) {
    const std::string device = it->second.info.device;
    entries_.erase(it);
    EmitLocked(ModelEvent{0, name, device, ModelState::kGone, reason, 0, "", 0});
    return absl::OkStatus();
  }
  UnloadLocked(it, reason);
  return absl::OkStatus();
}

absl::Status Registry::Replace(const std::string& name, std::shared_ptr<const LoadedModel> model,
                               std::unique_ptr<Scheduler> scheduler) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end() || it->second.info.state != ModelState::kReady) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' was unloaded while it was being quantized"));
  }
  Entry& e = it->second;
  DrainLocked(name, e, kReasonReplaced, /*announce_gone=*/false);  // its name lives on
  const bool pinned = e.info.pinned;
  const double keep_alive_s = e.info.keep_alive_s;
  e.info = model->info;
  e.info.state = ModelState::kReady;
  e.info.pinned = pinned;
  e.info.keep_alive_s = keep_alive_s;
  e.model = std::move(model);
  e.scheduler = std::move(scheduler);
  e.last_used = Clock::now();
  const ModelInfo info = Describe(e);
  EmitLocked(ModelEvent{0, name, info.device, ModelState::kReady, kReasonReplaced, info.bytes_resident, "", 0});
  reap_cv_.notify_all();
  return absl::OkStatus();
}

absl::StatusOr<Registry::Ready> Registry::Find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' is not loaded"));
  }
  const Entry& e = it->second;
  if (e.info.state == ModelState::kFailed) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", name, "' failed to load (", e.info.error, "); load it again or unload it"));
  }
  if (e.info.state != ModelState::kReady) {
    return absl::FailedPreconditionError(absl::StrCat("model '", name, "' is still loading"));
  }
  e.last_used = Clock::now();
  return Ready{e.model, e.scheduler};
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
    const int running = e.scheduler->Running();
    info.requests_running = running - info.requests_waiting;
    // e.info.bytes_resident holds the weights as placed (PlaceModel): the host weights
    // on cpu (plus a backend's copies), the uploaded weights on a GPU.
    info.bytes_resident = e.info.bytes_resident + info.kv_cache_bytes;
    info.idle_seconds = running > 0 ? 0 : SecondsBetween(e.last_used, Clock::now());
  } else if (e.info.state == ModelState::kLoading) {
    info.bytes_resident = e.reserved_bytes;
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
  return UsedLocked(device, "", /*idle_draining=*/true);
}

std::vector<std::string> Registry::ModelsOnDevice(const std::string& device) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_) {
    if (e.info.device == device && e.info.state != ModelState::kFailed) out.push_back(name);
  }
  for (const Draining& d : draining_) {
    if (d.device == device) out.push_back(absl::StrCat(d.name, " (", d.announce_gone ? "unloading" : "replaced", ")"));
  }
  return out;
}

int Registry::Running(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& [model_name, e] : entries_) {
    if ((name.empty() || name == model_name) && e.scheduler) n += e.scheduler->Running();
  }
  if (name.empty()) {
    for (const Draining& d : draining_) n += d.scheduler->Running();
  }
  return n;
}

std::vector<std::pair<std::string, int>> Registry::RunningByModel() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, int> by_name;
  for (const auto& [name, e] : entries_) {
    if (e.scheduler) by_name[name] += e.scheduler->Running();
  }
  for (const Draining& d : draining_) by_name[d.name] += d.scheduler->Running();
  return {by_name.begin(), by_name.end()};
}

void Registry::CancelAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, e] : entries_) {
    if (e.scheduler) e.scheduler->CancelAll();
  }
  for (Draining& d : draining_) d.scheduler->CancelAll();
}

void Registry::Shutdown() {
  std::map<std::string, Entry> entries;
  std::vector<Draining> draining;
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries.swap(entries_);
    draining.swap(draining_);
    sinks_.clear();
  }
  // Destructors stop and join outside the lock (their callbacks may call back in).
}

}  // namespace ingot
