#include "slab_pool.h"

#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <set>
#include <vector>

using gm::exporter::SlabAllocator;
using gm::exporter::SlabPool;

TEST_CASE("a burst of objects is returned to the system when it ends, but for one spare slab") {
  SlabPool pool;
  std::vector<void*> objs;
  for (int i = 0; i < 2000; ++i) {  // ~2000 x 320 bytes: 40 slabs of 16 KiB
    void* p = pool.Allocate(320);
    std::memset(p, 0xab, 320);  // the whole object is writable
    objs.push_back(p);
  }
  CHECK(pool.slabs() >= 39);
  CHECK(std::set<void*>(objs.begin(), objs.end()).size() == objs.size());  // all distinct
  // Freed in an interleaved order, as connections end.
  for (size_t i = 0; i < objs.size(); i += 2) pool.Deallocate(objs[i], 320);
  for (size_t i = 1; i < objs.size(); i += 2) pool.Deallocate(objs[i], 320);
  CHECK(pool.slabs() == 1);
}

TEST_CASE("freed slots are reused before a new slab is mapped; sizes share a slab per class") {
  SlabPool pool;
  void* a = pool.Allocate(100);
  void* b = pool.Allocate(120);  // the same 128-byte class
  CHECK(pool.slabs() == 1);
  pool.Deallocate(a, 100);
  void* c = pool.Allocate(128);
  CHECK(c == a);
  void* d = pool.Allocate(600);  // another class, another slab
  CHECK(pool.slabs() == 2);
  pool.Deallocate(b, 120);
  pool.Deallocate(c, 128);
  pool.Deallocate(d, 600);
  CHECK(pool.slabs() == 2);  // one spare per class that was used
}

TEST_CASE("objects larger than a slot come from operator new") {
  SlabPool pool;
  void* p = pool.Allocate(SlabPool::kMaxObject + 1);
  CHECK(pool.slabs() == 0);
  pool.Deallocate(p, SlabPool::kMaxObject + 1);
}

TEST_CASE("allocate_shared through SlabAllocator constructs and destroys in the pool") {
  SlabPool pool;
  {
    auto s = std::allocate_shared<std::vector<int>>(SlabAllocator<std::vector<int>>(pool), 3, 7);
    CHECK(s->size() == 3);
    CHECK(pool.slabs() == 1);
  }
  CHECK(pool.slabs() == 1);  // the spare
}
