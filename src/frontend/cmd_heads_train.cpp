// `kvforge heads train ...`: gate training lives in the Python package
// (PyTorch does the gradients), so this command hands its arguments to
// `python -m kvforge heads train ...` with the Python that `kvforge pull`
// uses ($KVFORGE_PYTHON, else python3 on PATH), after checking that the
// package is installed there.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "frontend/command.h"
#include "frontend/command_group.h"
#include "util/error.h"
#include "util/pip_fetch.h"

namespace kvforge::cli {
namespace {

[[noreturn]] void hand_over(const std::vector<std::string>& args) {
  const std::string python = find_python();
  if (run_process({python, "-c", "import importlib.util as u, sys; sys.exit(u.find_spec('kvforge') is None)"}) != 0)
    fail("the kvforge Python package is not installed for {} (`kvforge heads train` runs it); install it "
         "from the kvforge checkout with: {} -m pip install './[train]'",
         python, python);
  std::vector<std::string> argv = {python, "-m", "kvforge", "heads", "train"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  ::execv(python.c_str(), cargv.data());
  fail("cannot run {}: {}", python, std::strerror(errno));
}

CommandRegistrar reg(85, [](CLI::App& root) {
  CLI::App& heads = command_group(root, "heads", "Per-head KV cache gates (RLKV / DuoAttention)");
  auto* c = heads.add_subcommand("train", "Learn a gate per (layer, KV head) (runs `python -m kvforge heads train`; "
                                          "see `kvforge heads train --help`)");
  // Everything after `train` (--help included) belongs to the Python command.
  c->prefix_command();
  c->set_help_flag();
  c->callback([c] { hand_over(c->remaining()); });
});

}  // namespace
}  // namespace kvforge::cli
