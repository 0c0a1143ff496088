#include "engine/model/kv_cache.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"

namespace ingot {

absl::StatusOr<std::shared_ptr<KvPool>> KvPool::Create(const kernels::Backend& backend,
                                                       const kernels::Device& device,
                                                       const kernels::KvSpec& spec, int32_t n_blocks) {
  if (spec.block_tokens <= 0 || spec.n_layer <= 0 || spec.kv_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("KV pool: bad shape (", spec.n_layer, " layers, kv_dim ",
                                                   spec.kv_dim, ", ", spec.block_tokens, " tokens per block)"));
  }
  std::shared_ptr<KvPool> pool(new KvPool());
  pool->backend_ = &backend;
  pool->spec_ = spec;
  pool->growable_ = n_blocks == 0;
  ASSIGN_OR_RETURN(pool->store_, backend.new_kv(device, spec));
  if (n_blocks > 0) {
    ASSIGN_OR_RETURN(int32_t held, backend.reserve_kv(pool->store_, n_blocks));
    pool->blocks_.resize(held);
    for (int32_t b = held - 1; b >= 0; --b) pool->free_.push_back(b);
  }
  return pool;
}

KvPool::~KvPool() {
  if (store_ != nullptr) backend_->free_kv(store_);
}

int64_t KvPool::bytes() const { return backend_->kv_bytes(store_); }

absl::StatusOr<int32_t> KvPool::Allocate() {
  int32_t b = -1;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    b = lru_.front();
    Unpublish(b);  // takes it off lru_ and the map
  } else if (growable_) {
    const int32_t old = total_blocks();
    ASSIGN_OR_RETURN(int32_t held, backend_->reserve_kv(store_, std::max(4, 2 * old)));
    blocks_.resize(held);
    for (int32_t i = held - 1; i > old; --i) free_.push_back(i);
    b = old;
  } else {
    return absl::ResourceExhaustedError(absl::StrCat("KV pool full: all ", total_blocks(), " blocks of ",
                                                     spec_.block_tokens, " tokens are in use"));
  }
  blocks_[b].refs = 1;
  return b;
}

void KvPool::Retain(int32_t block) {
  Block& k = blocks_[block];
  if (k.refs == 0 && k.published) lru_.erase(k.lru);
  ++k.refs;
}

void KvPool::Release(int32_t block) {
  Block& k = blocks_[block];
  if (--k.refs > 0) return;
  if (k.published) {
    k.lru = lru_.insert(lru_.end(), block);
  } else {
    free_.push_back(block);
  }
}

void KvPool::Unpublish(int32_t block) {
  Block& k = blocks_[block];
  if (!k.published) return;
  if (k.refs == 0) lru_.erase(k.lru);
  by_hash_.erase(k.hash);
  k.published = false;
  k.tokens.clear();
}

uint64_t KvPool::ChainHash(uint64_t parent, absl::Span<const int32_t> tokens) {
  return absl::HashOf(parent, tokens);
}

void KvPool::Publish(int32_t block, uint64_t hash, uint64_t parent, absl::Span<const int32_t> tokens) {
  Block& k = blocks_[block];
  if (k.published) return;
  if (by_hash_.contains(hash)) return;  // an identical block is already cached
  k.published = true;
  k.hash = hash;
  k.parent = parent;
  k.tokens.assign(tokens.begin(), tokens.end());
  by_hash_[hash] = block;
}

int32_t KvPool::Lookup(uint64_t hash, uint64_t parent, absl::Span<const int32_t> tokens) {
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return -1;
  const Block& k = blocks_[it->second];
  if (k.parent != parent || !std::equal(tokens.begin(), tokens.end(), k.tokens.begin(), k.tokens.end())) {
    return -1;  // a hash collision
  }
  Retain(it->second);
  return it->second;
}

KvCache::KvCache(int32_t n_layer, int32_t kv_dim, int32_t head_dim) {
  kernels::KvSpec spec;
  spec.n_layer = n_layer;
  spec.kv_dim = kv_dim;
  spec.head_dim = head_dim;
  spec.dtype = kernels::KvDtype::kF32;
  auto pool = KvPool::Create(kernels::NativeBackend(), kernels::Device{}, spec, 0);
  pool_ = *std::move(pool);  // a growable f32 cpu pool cannot fail to be made
}

absl::Status KvCache::Reserve(int32_t tokens) {
  while (capacity() < tokens) {
    ASSIGN_OR_RETURN(int32_t b, pool_->Allocate());
    blocks_.push_back(b);
  }
  return absl::OkStatus();
}

void KvCache::Clear() {
  for (int32_t b : blocks_) pool_->Release(b);
  blocks_.clear();
}

}  // namespace ingot
