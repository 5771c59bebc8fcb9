#include "eval/gnuplot.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "util/error.h"
#include "util/pip_fetch.h"

namespace kvforge {

namespace fs = std::filesystem;

namespace {

std::string find_gnuplot() {
  const char* path_env = std::getenv("PATH");
  const std::string path = path_env ? path_env : "";
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    const fs::path cand = fs::path(end > start ? path.substr(start, end - start) : ".") / "gnuplot";
    std::error_code ec;
    if (fs::is_regular_file(cand, ec) && ::access(cand.c_str(), X_OK) == 0) return cand.string();
    start = end + 1;
  }
  return "";
}

}  // namespace

void draw_with_gnuplot(const std::string& dir, const std::string& stem, const std::string& data,
                       const GnuplotScript& script) {
  const std::string gnuplot = find_gnuplot();
  if (gnuplot.empty())
    fail("gnuplot not found on PATH: it draws {}.png (install the Debian package gnuplot-nox; scripts/setup.sh does)",
         stem);
  const fs::path data_path = fs::path(dir) / (stem + ".dat"), script_path = fs::path(dir) / (stem + ".gp"),
                 png = fs::path(dir) / (stem + ".png");
  {
    std::ofstream d(data_path), g(script_path);
    if (!d || !g) fail("cannot write into {}", dir);
    d << data;
    g << script(data_path.string(), png.string());
  }
  std::error_code ec;
  fs::remove(png, ec);
  const int rc = run_process({gnuplot, script_path.string()});
  const auto size = fs::file_size(png, ec);
  if (rc != 0 || ec || size == 0)
    fail("gnuplot failed on {} (exit status {}); its messages are above", script_path.string(), rc);
}

}  // namespace kvforge
