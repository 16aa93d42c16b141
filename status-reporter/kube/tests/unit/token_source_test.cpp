#include "detail/token_source.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

using gm::kube::detail::TokenSource;

namespace {

struct TokenFile {
  TokenFile() {
    char tmpl[] = "/tmp/kube-token-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    path = dir + "/token";
  }
  ~TokenFile() { std::filesystem::remove_all(dir); }
  void Write(const std::string& text) const { std::ofstream(path, std::ios::trunc) << text; }
  timespec MTime() const {
    struct stat st {};
    ::stat(path.c_str(), &st);
    return st.st_mtim;
  }
  // Puts back an earlier mtime: a change the mtime rule cannot see.
  void SetMTime(const timespec& t) const {
    const timespec times[2] = {t, t};
    ::utimensat(AT_FDCWD, path.c_str(), times, 0);
  }
  std::string dir, path;
};

}  // namespace

TEST_CASE("token source: a plain token is used as is") {
  TokenSource source("abc", "");
  CHECK(source.Token() == "abc");
  CHECK(source.Token(true) == "abc");
}

TEST_CASE("token source: the file is re-read when its mtime changes, or when forced") {
  TokenFile file;
  file.Write("first\n");
  TokenSource source("", file.path);
  CHECK(source.Token() == "first");

  const timespec before = file.MTime();
  file.Write("second");
  file.SetMTime(before);
  CHECK(source.Token() == "first");       // same mtime, read less than a minute ago
  CHECK(source.Token(true) == "second");  // after a 401

  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  file.Write("third");
  timespec newer = before;
  newer.tv_sec += 5;
  file.SetMTime(newer);
  CHECK(source.Token() == "third");
}

TEST_CASE("token source: re-read once the last read is older than the maximum age") {
  TokenFile file;
  file.Write("one");
  TokenSource source("", file.path, std::chrono::milliseconds(0));
  const timespec before = file.MTime();
  file.Write("two");
  file.SetMTime(before);
  CHECK(source.Token() == "two");
}

TEST_CASE("token source: an unreadable or empty file keeps the previous token") {
  TokenFile file;
  CHECK_THROWS_AS(TokenSource("", file.path), std::invalid_argument);
  CHECK(TokenSource("fallback", file.path).Token() == "fallback");

  file.Write("good");
  TokenSource source("", file.path);
  file.Write("");
  timespec newer = file.MTime();
  newer.tv_sec += 5;
  file.SetMTime(newer);
  CHECK(source.Token() == "good");
  std::filesystem::remove(file.path);
  CHECK(source.Token(true) == "good");
}
