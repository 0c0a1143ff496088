// Paged keys and values (vLLM's PagedAttention idea on ingot's backend rows).
//
// A KvPool is one backend store of fixed-size blocks (kernels::KvSpec) for one model on
// one device, with the host-side bookkeeping: a free list, a reference count per block
// and the prefix cache. A KvCache is one sequence's block table over a pool.
//
// Prefix cache: a full block whose keys and values are final is published under the
// hash of every token id up to its end (a chain: the block's tokens and the hash of the
// block before). A new sequence looks its prompt up block by block and shares the
// longest run of published blocks (reference-counted, read-only). Published blocks that
// no sequence holds stay cached and are evicted least recently used when the pool needs
// a block; free blocks are used first.
//
// Not thread-safe: one scheduler thread owns a pool and its caches; the counters are
// atomics so other threads may read them.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/backend.h"

namespace ingot {

class KvPool {
 public:
  // A pool of `n_blocks` blocks on (backend, device), reserved now. n_blocks = 0: a
  // private pool that grows on demand (a single sequence outside the scheduler:
  // tests, calibration, perplexity). RESOURCE_EXHAUSTED when the device has no room,
  // INVALID_ARGUMENT when the row cannot store the spec's dtype.
  static absl::StatusOr<std::shared_ptr<KvPool>> Create(const kernels::Backend& backend,
                                                        const kernels::Device& device,
                                                        const kernels::KvSpec& spec, int32_t n_blocks);
  ~KvPool();
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  const kernels::Backend& backend() const { return *backend_; }
  const kernels::KvSpec& spec() const { return spec_; }
  int32_t block_tokens() const { return spec_.block_tokens; }
  bool growable() const { return growable_; }
  void* store() const { return store_; }
  int32_t total_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  // Blocks a sequence could get now: free ones plus cached ones nobody holds.
  int32_t available_blocks() const { return static_cast<int32_t>(free_.size() + lru_.size()); }
  int32_t used_blocks() const { return total_blocks() - available_blocks(); }
  int32_t cached_blocks() const { return static_cast<int32_t>(by_hash_.size()); }
  int64_t bytes() const;  // the store's device bytes

  // A block for one holder (reference count 1): a free one, else the least recently
  // used cached one (dropped from the prefix cache), else (growable) a new one.
  // RESOURCE_EXHAUSTED when none is left.
  absl::StatusOr<int32_t> Allocate();
  void Retain(int32_t block);
  // Drops a holder; a block nobody holds becomes free, or stays cached if published.
  void Release(int32_t block);
  int32_t ref_count(int32_t block) const { return blocks_[block].refs; }

  // Prefix cache. The chained hash of a full block of tokens after the block hashed
  // `parent` (0 for the first block). Callers keep the chain: Publish and Lookup take
  // hash = ChainHash(parent, tokens) with the parent and tokens it was made of.
  static uint64_t ChainHash(uint64_t parent, absl::Span<const int32_t> tokens);
  // Records that `block` (held, full) holds the keys and values of `tokens` after
  // the prefix hashed `parent`; a block already published under that hash wins.
  void Publish(int32_t block, uint64_t hash, uint64_t parent, absl::Span<const int32_t> tokens);
  // The published block for (parent, tokens), retained for the caller; -1 when none
  // (or when another block collided on the hash).
  int32_t Lookup(uint64_t hash, uint64_t parent, absl::Span<const int32_t> tokens);

  // Counters (tokens of prompts looked up and of those found cached).
  std::atomic<int64_t> prefix_query_tokens{0}, prefix_hit_tokens{0};

 private:
  KvPool() = default;
  struct Block {
    int32_t refs = 0;
    bool published = false;
    uint64_t hash = 0;
    std::vector<int32_t> tokens;  // published: its tokens (checked on lookup)
    uint64_t parent = 0;
    std::list<int32_t>::iterator lru;  // in lru_ while published and unheld
  };
  void Unpublish(int32_t block);

  const kernels::Backend* backend_ = nullptr;
  kernels::KvSpec spec_;
  bool growable_ = false;
  void* store_ = nullptr;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;
  std::list<int32_t> lru_;  // cached and unheld, least recently used first
  absl::flat_hash_map<uint64_t, int32_t> by_hash_;
};

// One sequence's keys and values: its block table over a pool.
class KvCache {
 public:
  explicit KvCache(std::shared_ptr<KvPool> pool) : pool_(std::move(pool)) {}
  // A private growable native (cpu, f32) store: single sequences outside the scheduler.
  KvCache(int32_t n_layer, int32_t kv_dim, int32_t head_dim);
  ~KvCache() { Clear(); }
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Makes room for positions [0, tokens). RESOURCE_EXHAUSTED when the pool has no
  // free block (the blocks already held stay).
  absl::Status Reserve(int32_t tokens);
  // Takes shared, read-only blocks as the first blocks of an empty table (prefix hits;
  // each already retained for this cache).
  void Adopt(int32_t block) { blocks_.push_back(block); }
  // Releases every block.
  void Clear();
  int32_t capacity() const { return static_cast<int32_t>(blocks_.size()) * pool_->block_tokens(); }
  const std::vector<int32_t>& blocks() const { return blocks_; }
  int64_t bytes() const { return static_cast<int64_t>(blocks_.size()) * pool_->spec().BlockBytes(); }
  KvPool& pool() const { return *pool_; }
  void* store() const { return pool_->store(); }
  const kernels::Backend& backend() const { return pool_->backend(); }

 private:
  std::shared_ptr<KvPool> pool_;
  std::vector<int32_t> blocks_;
};

}  // namespace ingot
