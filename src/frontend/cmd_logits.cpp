// `kvforge logits`: the logits of every prompt position as a .npy file, for
// comparison with other engines (float32, shape [n_tokens, n_vocab]).
#include <nlohmann/json.hpp>

#include "eval/progress_bar.h"
#include "frontend/command.h"
#include "frontend/model_options.h"
#include "frontend/run_checks.h"
#include "util/error.h"
#include "util/npy.h"

namespace kvforge::cli {
namespace {

struct LogitsOptions {
  ModelOptions model;
  std::string prompt;
  std::string tokens_json;
  std::string out;
  bool no_bos = false;
};

void run(const LogitsOptions& o) {
  auto model = o.model.load_model();
  std::vector<TokenId> ids;
  if (!o.tokens_json.empty()) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(o.tokens_json);
      ids = j.get<std::vector<TokenId>>();
    } catch (const nlohmann::json::exception&) {
      fail("--tokens must be a JSON list of integers, e.g. [1, 2, 3]");
    }
  } else {
    ids = model->tokenizer().encode(o.prompt, !o.no_bos, true);
  }
  if (ids.empty()) fail("no tokens to evaluate");
  ContextParams cp = o.model.context_params();
  if (cp.n_ctx == 0) cp.n_ctx = std::max<int32_t>((int32_t)ids.size(), 1);
  Context ctx(*model, cp);
  if ((int64_t)ids.size() > ctx.cache().room())
    fail("{} tokens do not fit in the context of {} tokens; raise -c", ids.size(), ctx.n_ctx());
  const int32_t n_vocab = model->config().n_vocab;
  std::vector<float> logits((size_t)ids.size() * n_vocab);  // [n_tokens][n_vocab]
  warn_beyond_training(model->config(), (int64_t)ids.size(), "the input");
  ctx.eval(ids.data(), (int32_t)ids.size(), logits.data(), true, prefill_progress("logits"));
  write_npy_f32(o.out, logits.data(), {(int64_t)ids.size(), n_vocab});
  std::fprintf(stderr, "[kvforge] wrote logits [%zu, %d] to %s\n", ids.size(), n_vocab, o.out.c_str());
}

CommandRegistrar reg(40, [](CLI::App& root) {
  auto o = std::make_shared<LogitsOptions>();
  auto* c = root.add_subcommand("logits", "Write the logits of every prompt position to a .npy file [n_tokens, n_vocab]");
  o->model.add_to(*c);
  auto* p = c->add_option("-p,--prompt", o->prompt, "Prompt text (special tokens are parsed)");
  auto* t = c->add_option("--tokens", o->tokens_json, "Token ids as a JSON list instead of a prompt");
  p->excludes(t);
  c->add_option("-o,--output", o->out, "Output .npy file")->required();
  c->add_flag("--no-bos", o->no_bos, "Do not prepend BOS even if the vocabulary asks for it");
  c->callback([o] {
    if (o->prompt.empty() && o->tokens_json.empty()) fail("no input: give -p TEXT or --tokens JSON");
    run(*o);
  });
});

}  // namespace
}  // namespace kvforge::cli
