#pragma once
// Memory for the HTTP server's per-connection objects, kept out of malloc's heap.
//
// Why: asio's reactor keeps one small state object per socket it has ever
// registered in a pool it never frees. On the heap those objects sit between
// the connections' own allocations, so after a burst of connections (an
// attack of 600 idle sockets, 250 slow clients) the freed connection memory
// lies in sub-page holes between live pool objects: about 0.4 MiB stayed
// resident in every sidecar, and malloc_trim could return none of it
// (docs/benchmarks.md). Here a connection's objects come from slabs of their
// own, unmapped as soon as the last object in them is freed.
//
// Not thread-safe: only the server thread allocates and frees.

#include <array>
#include <cstddef>
#include <new>

namespace gm::exporter {

class SlabPool {
 public:
  /// Objects up to this size come from slabs; larger ones from operator new.
  static constexpr size_t kMaxObject = 1024;
  static constexpr size_t kSlabBytes = 16 << 10;

  SlabPool() = default;
  SlabPool(const SlabPool&) = delete;
  SlabPool& operator=(const SlabPool&) = delete;
  /// Every object must have been freed.
  ~SlabPool();

  void* Allocate(size_t bytes);
  void Deallocate(void* p, size_t bytes) noexcept;

  /// Slabs mapped now (for tests and the curious).
  size_t slabs() const { return slabs_; }

 private:
  struct Slab;
  static constexpr size_t kGranule = 64;
  static constexpr size_t kClasses = kMaxObject / kGranule;
  // Per size class: slabs with at least one free slot, and the one empty slab
  // kept so that a keep-alive connection's request-by-request allocations do
  // not map and unmap a slab each time.
  std::array<Slab*, kClasses> open_{};
  std::array<Slab*, kClasses> spare_{};
  size_t slabs_ = 0;
};

/// An allocator over a SlabPool: for std::allocate_shared and as the
/// associated allocator of asio handlers.
template <typename T>
class SlabAllocator {
 public:
  using value_type = T;
  explicit SlabAllocator(SlabPool& pool) noexcept : pool_(&pool) {}
  template <typename U>
  SlabAllocator(const SlabAllocator<U>& other) noexcept : pool_(other.pool()) {}  // NOLINT

  T* allocate(size_t n) { return static_cast<T*>(pool_->Allocate(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { pool_->Deallocate(p, n * sizeof(T)); }
  SlabPool* pool() const noexcept { return pool_; }

  template <typename U>
  bool operator==(const SlabAllocator<U>& o) const noexcept {
    return pool_ == o.pool();
  }
  template <typename U>
  bool operator!=(const SlabAllocator<U>& o) const noexcept {
    return pool_ != o.pool();
  }

 private:
  SlabPool* pool_;
};

}  // namespace gm::exporter
