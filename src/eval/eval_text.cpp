// See eval_text.h. pip fetches the pinned sdist (--require-hashes); the
// member is extracted by Python's tarfile module (the same interpreter pip
// runs in, so no extra tool), hashed, and renamed into place atomically.
#include "eval/eval_text.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "util/error.h"
#include "util/model_store.h"
#include "util/pip_fetch.h"

namespace kvforge {

namespace fs = std::filesystem;

const EvalTextInfo& eval_text_info() {
  static const EvalTextInfo info{
      "sentencepiece==0.2.0",
      "sentencepiece-0.2.0.tar.gz",
      "a52c19171daaf2e697dc6cbe67684e0fa341b1248966f6aebb541de654d15843",
      "sentencepiece-0.2.0/test/botchan.txt",
      "botchan.txt",
      278779,
      "464bd5300c24fce16fcc4555d4231a57632caae4d0090ad6aa92854a3b227ba7",
  };
  return info;
}

namespace {

void progress(const std::string& msg) {
  std::fprintf(stderr, "kvforge pull --eval-text: %s\n", msg.c_str());
  std::fflush(stderr);
}

fs::path eval_dir() {
  fs::path d = fs::path(cache_dir()) / "eval";
  std::error_code ec;
  fs::create_directories(d, ec);
  if (ec) fail("cannot create {}: {}", d.string(), ec.message());
  return d;
}

}  // namespace

std::string default_eval_text_path() { return (eval_dir() / eval_text_info().file_name).string(); }

std::string pull_eval_text(bool force) {
  const EvalTextInfo& info = eval_text_info();
  const fs::path dest = default_eval_text_path();
  const std::uint64_t have = file_size_or_zero(dest);
  if (have == info.size) {
    if (!force) {
      progress(fmt::format("{} is already present", dest.string()));
      return dest.string();
    }
    if (sha256_of_file(dest) == info.sha256) {
      progress("sha256 ok; nothing to do");
      return dest.string();
    }
    progress("sha256 mismatch: the cached text is corrupt; downloading it again");
  } else if (fs::exists(dest)) {
    progress(fmt::format("{} has the wrong size ({} bytes, expected {}); downloading it again", dest.string(), have,
                         info.size));
  }

  TempDir tmp(dest.parent_path());
  const fs::path archive =
      pip_download({info.requirement, info.archive, info.archive_sha256, true}, tmp.path(), "kvforge pull --eval-text");
  const fs::path part = tmp.path() / (std::string(info.file_name) + ".part");
  progress(fmt::format("extracting {}", info.member));
  const std::string script =
      "import sys, tarfile\n"
      "with tarfile.open(sys.argv[1], 'r:gz') as t:\n"
      "    f = t.extractfile(sys.argv[2])\n"
      "    if f is None: sys.exit('not a regular file: ' + sys.argv[2])\n"
      "    open(sys.argv[3], 'wb').write(f.read())\n";
  const int rc = run_process({find_python(), "-c", script, archive.string(), info.member, part.string()});
  if (rc != 0) fail("cannot extract {} from {} (exit status {})", info.member, info.archive, rc);
  const std::uint64_t got = file_size_or_zero(part);
  if (got != info.size) fail("{} is {} bytes, expected {}", info.member, got, info.size);
  const std::string digest = sha256_of_file(part);
  if (digest != info.sha256) fail("sha256 mismatch for {}: got {}, expected {}", info.member, digest, info.sha256);
  std::error_code ec;
  fs::rename(part, dest, ec);
  if (ec) fail("cannot move the text into {}: {}", dest.string(), ec.message());
  progress(fmt::format("sha256 ok; saved {} ({} bytes)", dest.string(), info.size));
  return dest.string();
}

std::string resolve_eval_text(const std::string& flag) {
  if (!flag.empty()) {
    std::error_code ec;
    if (!fs::is_regular_file(flag, ec)) fail("text file not found: {}", flag);
    return flag;
  }
  const fs::path p = default_eval_text_path();
  if (file_size_or_zero(p) == eval_text_info().size) return p.string();
  return pull_eval_text(false);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace kvforge
