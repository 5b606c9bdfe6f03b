#include "receiver/elastic_task_queue.h"

#include <algorithm>
#include <utility>

namespace hoist::receiver {

ElasticTaskQueue::ElasticTaskQueue(size_t min_threads, size_t max_threads,
                                   absl::Duration idle_exit)
    : min_threads_(min_threads),
      max_threads_(std::max(max_threads, min_threads)),
      idle_exit_(idle_exit) {}

ElasticTaskQueue::~ElasticTaskQueue() { shutdown(); }

void ElasticTaskQueue::enqueue(std::function<void()> fn) {
  std::vector<std::thread> finished;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return;
    queue_.push_back(std::move(fn));
    if (idle_ < queue_.size() && threads_ < max_threads_) {
      ++threads_;
      const uint64_t id = next_id_++;
      workers_.emplace(id, std::thread([this, id] { Work(id); }));
    }
    finished = TakeFinished();
  }
  for (std::thread& t : finished) t.join();
}

void ElasticTaskQueue::shutdown() {
  std::vector<std::thread> all;
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
    mu_.Await(absl::Condition(
        +[](size_t* threads) { return *threads == 0; }, &threads_));
    finished_.clear();
    for (auto& [id, t] : workers_) all.push_back(std::move(t));
    workers_.clear();
  }
  for (std::thread& t : all) t.join();
}

void ElasticTaskQueue::Work(uint64_t id) {
  absl::MutexLock lock(&mu_);
  while (true) {
    ++idle_;
    const bool woke = mu_.AwaitWithTimeout(
        absl::Condition(this, &ElasticTaskQueue::HasWorkOrShutdown),
        idle_exit_);
    --idle_;
    if (queue_.empty()) {
      if (shutdown_ || (!woke && threads_ > min_threads_)) break;
      continue;
    }
    std::function<void()> fn = std::move(queue_.front());
    queue_.pop_front();
    mu_.Unlock();
    fn();
    fn = nullptr;
    mu_.Lock();
  }
  --threads_;
  finished_.push_back(id);
}

bool ElasticTaskQueue::HasWorkOrShutdown() const {
  return !queue_.empty() || shutdown_;
}

std::vector<std::thread> ElasticTaskQueue::TakeFinished() {
  std::vector<std::thread> out;
  for (uint64_t id : finished_) {
    auto it = workers_.find(id);
    if (it == workers_.end()) continue;
    out.push_back(std::move(it->second));
    workers_.erase(it);
  }
  finished_.clear();
  return out;
}

}  // namespace hoist::receiver
