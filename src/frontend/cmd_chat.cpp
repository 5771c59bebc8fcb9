// `kvforge chat`: interactive multi-turn chat. The KV cache lives across
// turns: each turn only prefills the new user message (and the end of the
// previous assistant turn), never the whole conversation again.
#include <cstdio>
#include <iostream>

#include <unistd.h>

#include "eval/progress_bar.h"
#include "frontend/command.h"
#include "frontend/model_options.h"
#include "model/generate.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"

namespace kvforge::cli {
namespace {

struct ChatOptions {
  ModelOptions model;
  SamplingOptions sampling;
  std::string system;
  std::string chat_format;
  int32_t n_predict = 512;
};

void run(ChatOptions& o) {
  auto model = o.model.load_model();
  const Tokenizer& tok = model->tokenizer();
  // ChatTemplate, not just the format: it carries the model's default system message.
  const ChatTemplate tpl =
      o.chat_format.empty() ? detect_chat_template(model->file()) : ChatTemplate(parse_chat_format(o.chat_format));
  const ChatFormat fmt = tpl.format;
  Context ctx(*model, o.model.context_params());
  GenerateParams gp;
  gp.n_predict = o.n_predict;
  gp.sampling = o.sampling.resolve();
  gp.on_prefill = prefill_progress("prefill");  // a long pasted message
  const bool tty = isatty(fileno(stdin));
  std::fprintf(stderr, "[kvforge] chat with %s (%s format, context %d tokens). Empty line or Ctrl-D ends.\n",
               model->config().name.c_str(), chat_format_name(fmt), ctx.n_ctx());

  std::vector<ChatMessage> pending;  // messages not yet in the cache
  std::vector<TokenId> uncached;     // generated tokens that never went through the model
  if (!o.system.empty()) pending.push_back({"system", o.system});
  std::string line;
  for (bool first = true;; first = false) {
    if (tty) std::fprintf(stderr, "\n> ");
    if (!std::getline(std::cin, line) || line.empty()) break;
    pending.push_back({"user", line});
    // The previous assistant turn is in the cache up to its last generated
    // token; render_chat of the new chunk starts after it, so close that turn first.
    std::string text = first ? "" : chat_turn_end(fmt) + chat_turn_separator(fmt);
    text += render_chat(tpl, pending, true, first);
    pending.clear();
    std::vector<TokenId> ids = uncached;
    const std::vector<TokenId> chunk = tok.encode(text, first && !chat_format_writes_bos(fmt), true);
    ids.insert(ids.end(), chunk.begin(), chunk.end());
    if ((int64_t)ids.size() + 1 > ctx.cache().room()) {
      std::fprintf(stderr, "[kvforge] the conversation no longer fits in the context (%d tokens); ending. "
                   "Use -c to allow a longer one.\n", ctx.n_ctx());
      break;
    }
    const GenerateResult r = generate(ctx, ids, gp, [](const std::string& s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    });
    std::fputc('\n', stdout);
    std::fflush(stdout);
    // generate() evaluates a sampled token only when it needs the next
    // logits; a reply cut by length or a stop string leaves its last token out.
    uncached.assign(r.tokens.begin() + r.n_decoded, r.tokens.end());
    std::fprintf(stderr, "[kvforge] prefilled %d new tokens at %.1f tok/s, generated %zu at %.1f tok/s, cache %d/%d\n",
                 r.n_prompt, r.prefill_seconds > 0 ? r.n_prompt / r.prefill_seconds : 0.0, r.tokens.size(),
                 r.decode_seconds > 0 ? r.n_decoded / r.decode_seconds : 0.0, ctx.n_past(), ctx.n_ctx());
  }
}

CommandRegistrar reg(20, [](CLI::App& root) {
  auto o = std::make_shared<ChatOptions>();
  auto* c = root.add_subcommand("chat", "Interactive multi-turn chat that keeps the KV cache between turns");
  o->model.add_to(*c);
  o->sampling.add_to(*c);
  c->add_option("--system", o->system, "System message");
  c->add_option("--chat-format", o->chat_format, "Force a chat format: chatml, smollm3, llama3, gemma, phi3, phi3-compact or raw (default: from the model)");
  c->add_option("-n,--n-predict", o->n_predict, "Maximum new tokens per reply")->capture_default_str();
  c->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvforge::cli
