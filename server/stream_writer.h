// A server-streaming reactor that any thread may feed: Push() queues a message,
// Close() ends the stream once the queue is written. One Write is outstanding at a
// time (OnWriteDone starts the next); Finish is called exactly once, after the last
// write, and OnDone deletes the reactor.
//
// Lifetime rule for subclasses: whoever feeds the reactor from another thread (the
// engine's scheduler, a load thread) must be done with it before calling Close(),
// because Close() may lead to OnDone and `delete this` on a gRPC thread.
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <utility>

#include <grpcpp/support/server_callback.h>
#include <grpcpp/support/status.h>

namespace ingot::server {

template <typename Response>
class QueuedWriter : public grpc::ServerWriteReactor<Response> {
 public:
  void OnWriteDone(bool ok) final {
    std::unique_lock lock(mu_);
    writing_ = false;
    if (!ok && !broken_) {
      // The client is gone (cancelled or disconnected); nothing more can be written.
      broken_ = true;
      queue_.clear();
      lock.unlock();
      OnStreamBroken();
      lock.lock();
    }
    Pump(std::move(lock));
  }

  void OnDone() final { delete this; }

 protected:
  QueuedWriter() = default;
  ~QueuedWriter() override = default;

  // Queues `message`. Ignored once the stream is broken or closed.
  void Push(Response message) {
    std::unique_lock lock(mu_);
    if (broken_ || closed_) return;
    queue_.push_back(std::move(message));
    Pump(std::move(lock));
  }

  // Push() for a producer that must not grow the queue without bound: with
  // `max_queued` messages already waiting (the client reads slower than they come),
  // they are dropped and the stream ends with `overflow` once the write in flight
  // completes (or at once if the stream breaks); returns false that once, and every
  // later Push is ignored. A full queue always has a write in flight, so this never calls
  // Finish (nor BeforeFinish) on the caller's thread: a producer may call it under its
  // own locks.
  bool PushBounded(Response message, size_t max_queued, grpc::Status overflow) {
    std::unique_lock lock(mu_);
    if (broken_ || closed_) return true;  // ignored, as Push does
    if (queue_.size() >= max_queued && writing_) {
      queue_.clear();
      closed_ = true;
      final_status_ = std::move(overflow);
      return false;
    }
    queue_.push_back(std::move(message));
    Pump(std::move(lock));
    return true;
  }

  // Ends the stream with `status` once every queued message is written (at once if
  // the stream is broken). Only the first call counts. The caller must not touch the
  // reactor afterwards.
  void Close(grpc::Status status) {
    std::unique_lock lock(mu_);
    if (closed_) return;
    closed_ = true;
    final_status_ = std::move(status);
    Pump(std::move(lock));
  }

  // Called without the lock when a write fails (the client went away), once.
  virtual void OnStreamBroken() {}
  // Called without the lock right before Finish(status), once: the place for a
  // request's summary log line and metrics.
  virtual void BeforeFinish(const grpc::Status& status) {}

 private:
  // Starts the next write or the Finish, releasing the lock before calling gRPC.
  void Pump(std::unique_lock<std::mutex> lock) {
    if (writing_ || finished_) return;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      lock.unlock();
      this->StartWrite(&current_);
      return;
    }
    if (!closed_) return;
    finished_ = true;
    grpc::Status status = std::move(final_status_);
    lock.unlock();
    BeforeFinish(status);
    this->Finish(status);
  }

  std::mutex mu_;
  std::deque<Response> queue_;
  Response current_;             // the message being written; stable until OnWriteDone
  bool writing_ = false;         // a StartWrite is outstanding
  bool closed_ = false;          // Close() was called
  bool broken_ = false;          // a write failed
  bool finished_ = false;        // Finish() was called
  grpc::Status final_status_;
};

}  // namespace ingot::server
