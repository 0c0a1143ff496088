// The paged KV pool's bookkeeping: allocation, reference counts, the prefix cache
// (publish, lookup, LRU eviction of unheld blocks) and a growable private pool.
#include "engine/model/kv_cache.h"

#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/ops.h"

namespace ingot {
namespace {

using kernels::KvDtype;
using kernels::KvSpec;

KvSpec Spec(int32_t block_tokens = 4) {
  KvSpec s;
  s.n_layer = 2;
  s.kv_dim = 64;
  s.head_dim = 32;
  s.block_tokens = block_tokens;
  s.dtype = KvDtype::kF16;
  return s;
}

// Publish and Lookup with the chain hash of (parent, tokens), as the scheduler calls them.
void Publish(KvPool& pool, int32_t block, uint64_t parent, const std::vector<int32_t>& tokens) {
  pool.Publish(block, KvPool::ChainHash(parent, tokens), parent, tokens);
}
int32_t Lookup(KvPool& pool, uint64_t parent, const std::vector<int32_t>& tokens) {
  return pool.Lookup(KvPool::ChainHash(parent, tokens), parent, tokens);
}

std::shared_ptr<KvPool> Pool(int32_t blocks) {
  auto p = KvPool::Create(kernels::NativeBackend(), kernels::Device{}, Spec(), blocks);
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

TEST(KvPool, AllocatesEveryBlockOnceThenRefusesAndReusesFreedOnes) {
  auto pool = Pool(3);
  EXPECT_EQ(pool->total_blocks(), 3);
  EXPECT_EQ(pool->bytes(), 3 * Spec().BlockBytes());
  std::vector<int32_t> got;
  for (int i = 0; i < 3; ++i) {
    auto b = pool->Allocate();
    ASSERT_TRUE(b.ok());
    got.push_back(*b);
  }
  std::vector<int32_t> sorted = got;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(pool->available_blocks(), 0);
  auto full = pool->Allocate();
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(full.status().message().find("all 3 blocks"), std::string::npos) << full.status();
  // A block held twice is free only after both holders let go.
  pool->Retain(got[1]);
  pool->Release(got[1]);
  EXPECT_EQ(pool->available_blocks(), 0);
  EXPECT_EQ(pool->ref_count(got[1]), 1);
  pool->Release(got[1]);
  EXPECT_EQ(pool->available_blocks(), 1);
  auto again = pool->Allocate();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, got[1]);
}

TEST(KvPool, PublishedBlocksAreFoundByTheirWholePrefixAndEvictedLeastRecentlyUsed) {
  auto pool = Pool(3);
  const std::vector<int32_t> a = {1, 2, 3, 4}, b = {5, 6, 7, 8}, c = {9, 9, 9, 9};
  const int32_t ba = *pool->Allocate(), bb = *pool->Allocate();
  Publish(*pool, ba, 0, a);
  const uint64_t ha = KvPool::ChainHash(0, a);
  Publish(*pool, bb, ha, b);
  EXPECT_EQ(pool->cached_blocks(), 2);
  // The same tokens after another prefix are another block.
  EXPECT_EQ(Lookup(*pool, 0, b), -1);
  EXPECT_EQ(Lookup(*pool, KvPool::ChainHash(0, c), b), -1);
  // A hash that names a published block but other tokens is a collision, not a hit.
  EXPECT_EQ(pool->Lookup(KvPool::ChainHash(0, a), 0, b), -1);
  // Held blocks are shared: a lookup retains.
  EXPECT_EQ(Lookup(*pool, 0, a), ba);
  EXPECT_EQ(pool->ref_count(ba), 2);
  pool->Release(ba);
  // Released published blocks stay cached and count as available.
  pool->Release(ba);
  pool->Release(bb);
  EXPECT_EQ(pool->available_blocks(), 3);
  EXPECT_EQ(pool->cached_blocks(), 2);
  // A lookup makes a block recently used: bb was released last, but ba is looked up
  // (and released) after it, so bb goes first once the free block is taken.
  ASSERT_EQ(Lookup(*pool, 0, a), ba);
  pool->Release(ba);
  const int32_t free_block = *pool->Allocate();
  EXPECT_NE(free_block, ba);
  EXPECT_NE(free_block, bb);
  EXPECT_EQ(pool->cached_blocks(), 2);
  EXPECT_EQ(*pool->Allocate(), bb);  // evicted: no longer found
  EXPECT_EQ(Lookup(*pool, ha, b), -1);
  EXPECT_EQ(pool->cached_blocks(), 1);
  EXPECT_EQ(*pool->Allocate(), ba);
  EXPECT_EQ(Lookup(*pool, 0, a), -1);
  EXPECT_FALSE(pool->Allocate().ok());
}

TEST(KvPool, PublishingTheSameContentTwiceKeepsTheFirstBlock) {
  auto pool = Pool(2);
  const std::vector<int32_t> a = {1, 2, 3, 4};
  const int32_t x = *pool->Allocate(), y = *pool->Allocate();
  Publish(*pool, x, 0, a);
  Publish(*pool, y, 0, a);
  EXPECT_EQ(pool->cached_blocks(), 1);
  pool->Release(y);  // not published: free at once
  EXPECT_EQ(pool->available_blocks(), 1);
  EXPECT_EQ(Lookup(*pool, 0, a), x);
}

TEST(KvCache, ReservesBlocksAndGivesThemBackAndAGrowablePoolGrows) {
  auto pool = Pool(4);
  {
    KvCache cache(pool);
    ASSERT_TRUE(cache.Reserve(9).ok());  // 3 blocks of 4
    EXPECT_EQ(cache.blocks().size(), 3u);
    EXPECT_EQ(cache.capacity(), 12);
    EXPECT_EQ(pool->available_blocks(), 1);
    KvCache other(pool);
    EXPECT_EQ(other.Reserve(8).code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(other.blocks().size(), 1u);  // what it got stays held until cleared
    other.Clear();
    EXPECT_EQ(pool->available_blocks(), 1);
  }
  EXPECT_EQ(pool->available_blocks(), 4);

  KvCache own(2, 64, 32);  // a private f32 pool
  ASSERT_TRUE(own.Reserve(1000).ok());
  EXPECT_GE(own.capacity(), 1000);
  EXPECT_GE(own.pool().total_blocks(), 1000 / 16);
  EXPECT_EQ(own.pool().spec().dtype, KvDtype::kF32);
}

// Contents survive the growth of a private pool (the store is reallocated).
TEST(KvCache, GrowingKeepsWhatTheBlocksHold) {
  KvCache own(1, 64, 32);
  ASSERT_TRUE(own.Reserve(16).ok());
  auto* store = static_cast<kernels::CpuKvStore*>(own.store());
  std::vector<float> row(64);
  std::iota(row.begin(), row.end(), 0.5f);
  store->Store(row.data(), store->At(own.blocks().data(), 0, 1, 15));
  ASSERT_TRUE(own.Reserve(4000).ok());
  store = static_cast<kernels::CpuKvStore*>(own.store());
  const float* back = reinterpret_cast<const float*>(store->At(own.blocks().data(), 0, 1, 15));
  for (int i = 0; i < 64; ++i) ASSERT_EQ(back[i], row[i]);
}

}  // namespace
}  // namespace ingot
