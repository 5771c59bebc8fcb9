#pragma once
// One exception type for every user-facing failure (bad file, bad flag, bad
// prompt). Frontends catch it, print one line "error: ..." and exit non-zero.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace kvforge {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace kvforge
