// Test helpers for the text half of data/: where the bundled data lives, and skipping with a
// reason when it has not been fetched (scripts/test runs scripts/setup, which fetches it).
#ifndef HEADROOM_TESTS_DATA_TEXT_TEST_UTIL_H_
#define HEADROOM_TESTS_DATA_TEXT_TEST_UTIL_H_

#include <sys/stat.h>

#include <cstdlib>
#include <string>

namespace headroom::testing {

// ${HEADROOM_CACHE:-~/.cache/headroom}/relative, as scripts/fetch-data writes it.
inline std::string CachePath(const std::string& relative) {
  const char* cache = std::getenv("HEADROOM_CACHE");
  std::string dir =
      cache != nullptr && *cache != '\0'
          ? std::string(cache)
          : std::string(std::getenv("HOME") ? std::getenv("HOME") : "") + "/.cache/headroom";
  return dir + "/" + relative;
}

inline bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// A fresh empty directory under TEST_TMPDIR or /tmp.
inline std::string MakeTempDir(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string templ = std::string(base != nullptr ? base : "/tmp") + "/" + name + "-XXXXXX";
  char* dir = ::mkdtemp(templ.data());
  return dir != nullptr ? std::string(dir) : std::string();
}

}  // namespace headroom::testing

// Skips the test, saying how to get the data, when a bundled file is missing.
#define HR_SKIP_WITHOUT_BUNDLED(path)                                                    \
  do {                                                                                   \
    if (!::headroom::testing::FileExists(path)) {                                        \
      GTEST_SKIP() << path << " is missing; run scripts/fetch-data (scripts/test does)"; \
    }                                                                                    \
  } while (0)

#endif  // HEADROOM_TESTS_DATA_TEXT_TEST_UTIL_H_
