#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <spdlog/spdlog.h>

int main(int argc, char** argv) {
  // The library logs retries and reconnects; the tests provoke plenty.
  spdlog::set_level(spdlog::level::err);
  doctest::Context context(argc, argv);
  return context.run();
}
