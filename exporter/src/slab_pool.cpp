#include "slab_pool.h"

#include <sanitizer/asan_interface.h>  // no-op macros unless built with ASan
#include <sys/mman.h>

#include <cstdint>

namespace gm::exporter {

// A slab: this header, then equal slots. Slabs are aligned to their size, so
// a slot's slab is its address rounded down.
struct SlabPool::Slab {
  Slab* next = nullptr;  // in open_ (only while it has a free slot)
  Slab* prev = nullptr;
  void* free = nullptr;  // freed slots, linked through their first word
  size_t slot = 0;
  size_t cls = 0;
  size_t live = 0;
  size_t carved = 0;  // slots handed out at least once
  size_t capacity = 0;
  bool in_open = false;

  char* SlotAt(size_t i) { return reinterpret_cast<char*>(this) + Header() + i * slot; }
  static constexpr size_t Header() { return (sizeof(Slab) + kGranule - 1) / kGranule * kGranule; }
};

namespace {

void* MapAligned(size_t size) {
  // Twice the size, then the unaligned ends are unmapped.
  void* raw = mmap(nullptr, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  // Pointer arithmetic on the mapping, not integer-to-pointer casts.
  char* const base = static_cast<char*>(raw);
  const size_t misalignment = reinterpret_cast<uintptr_t>(raw) & (size - 1);
  char* const aligned = misalignment == 0 ? base : base + (size - misalignment);
  if (aligned > base) munmap(base, static_cast<size_t>(aligned - base));
  char* const end = base + 2 * size;
  if (end > aligned + size) munmap(aligned + size, static_cast<size_t>(end - (aligned + size)));
  return aligned;
}

}  // namespace

SlabPool::~SlabPool() {
  for (auto* list : {&open_, &spare_}) {
    for (Slab* s : *list) {
      while (s != nullptr) {
        Slab* next = list == &open_ ? s->next : nullptr;
        ASAN_UNPOISON_MEMORY_REGION(s, kSlabBytes);  // the address range may be mapped again
        munmap(s, kSlabBytes);
        s = next;
      }
    }
  }
}

void* SlabPool::Allocate(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes > kMaxObject) return ::operator new(bytes);
  const size_t cls = (bytes - 1) / kGranule;
  Slab* s = open_[cls];
  if (s == nullptr) {
    s = spare_[cls];
    spare_[cls] = nullptr;
    if (s == nullptr) {
      s = new (MapAligned(kSlabBytes)) Slab;
      s->slot = (cls + 1) * kGranule;
      s->cls = cls;
      s->capacity = (kSlabBytes - Slab::Header()) / s->slot;
      // Under ASan a slot is addressable only while it is handed out, so a
      // use after free in a connection is still caught.
      ASAN_POISON_MEMORY_REGION(s->SlotAt(0), s->capacity * s->slot);
      ++slabs_;
    }
    s->next = nullptr;
    s->prev = nullptr;
    s->in_open = true;
    open_[cls] = s;
  }
  void* p;
  if (s->free != nullptr) {
    p = s->free;
    ASAN_UNPOISON_MEMORY_REGION(p, s->slot);
    s->free = *static_cast<void**>(p);
  } else {
    p = s->SlotAt(s->carved++);
    ASAN_UNPOISON_MEMORY_REGION(p, s->slot);
  }
  ++s->live;
  if (s->free == nullptr && s->carved == s->capacity) {  // full: out of the open list
    open_[cls] = s->next;
    if (s->next != nullptr) s->next->prev = nullptr;
    s->next = s->prev = nullptr;
    s->in_open = false;
  }
  return p;
}

void SlabPool::Deallocate(void* p, size_t bytes) noexcept {
  if (p == nullptr) return;
  if (bytes == 0) bytes = 1;
  if (bytes > kMaxObject) return ::operator delete(p);
  // Slabs are aligned to their size: the slab starts at p rounded down.
  auto* s = reinterpret_cast<Slab*>(static_cast<char*>(p) -
                                    (reinterpret_cast<uintptr_t>(p) & (kSlabBytes - 1)));
  *static_cast<void**>(p) = s->free;
  s->free = p;
  ASAN_POISON_MEMORY_REGION(p, s->slot);
  --s->live;
  const size_t cls = s->cls;
  if (!s->in_open) {  // it was full: open again
    s->prev = nullptr;
    s->next = open_[cls];
    if (s->next != nullptr) s->next->prev = s;
    open_[cls] = s;
    s->in_open = true;
  }
  if (s->live > 0) return;
  // Empty: out of the open list; kept as the spare if there is none, else unmapped.
  if (s->prev != nullptr) s->prev->next = s->next;
  if (s->next != nullptr) s->next->prev = s->prev;
  if (open_[cls] == s) open_[cls] = s->next;
  s->in_open = false;
  if (spare_[cls] == nullptr) {
    // Fresh as a new slab, so that its slots are carved again in order.
    s->free = nullptr;
    s->carved = 0;
    ASAN_POISON_MEMORY_REGION(s->SlotAt(0), s->capacity * s->slot);
    spare_[cls] = s;
    return;
  }
  ASAN_UNPOISON_MEMORY_REGION(s, kSlabBytes);  // the address range may be mapped again
  munmap(s, kSlabBytes);
  --slabs_;
}

}  // namespace gm::exporter
