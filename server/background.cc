#include "server/background.h"

#include <malloc.h>

#include "server/status.h"

namespace ingot::server {

void BackgroundJobs::Run(std::function<void()> fn, std::shared_ptr<std::atomic<bool>> cancel, Job job) {
  std::lock_guard lock(mu_);
  if (cancel && cancelled_.count(job)) cancel->store(true);
  // Reap threads that have finished so the list stays short.
  std::erase_if(workers_, [](Worker& w) {
    if (!w.done->load()) return false;
    w.thread.join();
    return true;
  });
  auto done = std::make_shared<std::atomic<bool>>(false);
  workers_.push_back(Worker{std::thread([fn = std::move(fn), done] {
                              fn();
                              // A job's scratch (quantization buffers, evaluation
                              // workspaces) sits in this thread's malloc arena, which
                              // glibc keeps when the thread ends: hand it back.
                              malloc_trim(0);
                              done->store(true);
                            }),
                            done, std::move(cancel), job});
}

void BackgroundJobs::Cancel(std::optional<Job> kind) {
  std::lock_guard lock(mu_);
  for (Job j : {Job::kModelChange, Job::kResult}) {
    if (!kind || *kind == j) cancelled_.insert(j);
  }
  for (Worker& w : workers_) {
    if (w.cancel && cancelled_.count(w.job)) w.cancel->store(true);
  }
}

void BackgroundJobs::Join() {
  std::vector<Worker> workers;
  {
    std::lock_guard lock(mu_);
    workers.swap(workers_);
  }
  for (Worker& w : workers) w.thread.join();
}

BackgroundUnaryReactor::BackgroundUnaryReactor(BackgroundJobs* jobs,
                                               std::function<absl::Status(const std::atomic<bool>*)> work) {
  jobs->Run(
      [this, work = std::move(work), cancel = cancel_] {
        const absl::Status s = work(cancel.get());
        Finish(ToGrpcStatus(s));  // last touch: OnDone may delete this now
      },
      cancel_, BackgroundJobs::Job::kResult);
}

}  // namespace ingot::server
