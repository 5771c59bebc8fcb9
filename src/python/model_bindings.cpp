// Model: loading, configuration, tokenizer.
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/vector.h>

#include "model/model.h"
#include "model/utf8_sanitize.h"
#include "tokenizer/chat_template.h"
#include "python/bindings.h"

namespace nb = nanobind;

namespace kvforge::python {

void bind_model(nb::module_& m) {
  nb::class_<ModelConfig>(m, "ModelConfig", "Architecture-independent shape of a loaded model (read-only)")
      .def_ro("arch", &ModelConfig::arch)
      .def_ro("name", &ModelConfig::name)
      .def_ro("n_vocab", &ModelConfig::n_vocab)
      .def_ro("n_ctx_train", &ModelConfig::n_ctx_train)
      .def_ro("d_model", &ModelConfig::d_model)
      .def_ro("n_layer", &ModelConfig::n_layer)
      .def_ro("n_head", &ModelConfig::n_head)
      .def_ro("n_kv_head", &ModelConfig::n_kv_head)
      .def_ro("head_dim_k", &ModelConfig::head_dim_k, "per head: queries and keys")
      .def_ro("head_dim_v", &ModelConfig::head_dim_v, "per head: values and the attention output")
      .def_ro("d_ff", &ModelConfig::d_ff)
      .def_ro("norm_eps", &ModelConfig::norm_eps);

  nb::class_<Model>(m, "Model", "A loaded GGUF model; immutable, shared by any number of Contexts",
                    nb::is_weak_referenceable())
      .def_static(
          "load",
          [](const std::string& path, bool repack) {
            Model::LoadOptions opts;
            opts.repack = repack;
            nb::gil_scoped_release release;
            return Model::load(path, opts);
          },
          nb::arg("path"), nb::arg("repack") = true,
          "Loads a GGUF file. repack=False keeps the file's weight layout (A/B measurements).")
      .def_prop_ro("config", &Model::config, nb::rv_policy::reference_internal)
      .def_prop_ro("weight_bytes", &Model::weight_bytes)
      .def_prop_ro("bos", [](const Model& mo) { return mo.tokenizer().vocab().bos; })
      .def_prop_ro("eos", [](const Model& mo) { return mo.tokenizer().vocab().eos; })
      .def(
          "tokenize",
          [](const Model& mo, const std::string& text, bool add_bos, bool parse_special) {
            return mo.tokenizer().encode(text, add_bos, parse_special);
          },
          nb::arg("text"), nb::arg("add_bos") = true, nb::arg("parse_special") = true,
          "Token ids of text (BOS prepended when add_bos and the vocabulary asks for it).")
      .def(
          "detokenize",
          [](const Model& mo, const std::vector<TokenId>& ids, bool keep_special) {
            return utf8::sanitize(mo.tokenizer().decode(ids, keep_special));
          },
          nb::arg("tokens"), nb::arg("keep_special") = false,
          "Text of token ids (ill-formed UTF-8 replaced by U+FFFD).")
      .def(
          "token_to_piece",
          [](const Model& mo, TokenId id) {
            const std::string s = mo.tokenizer().token_to_piece(id);
            return nb::bytes(s.data(), s.size());
          },
          nb::arg("token"), "Raw bytes of one token (may be part of a UTF-8 character).")
      .def(
          "is_end_of_generation",
          [](const Model& mo, TokenId id) { return mo.tokenizer().is_end_of_generation(id); },
          nb::arg("token"))
      .def(
          "chat_prompt",
          [](const Model& mo, const std::vector<std::pair<std::string, std::string>>& messages, bool add_generation_prompt) {
            std::vector<ChatMessage> msgs;
            for (const auto& [role, content] : messages) msgs.push_back({role, content});
            return render_chat(detect_chat_template(mo.file()), msgs, add_generation_prompt);
          },
          nb::arg("messages"), nb::arg("add_generation_prompt") = true,
          "The prompt text of [(role, content), ...] in the model's chat template (as `kvforge chat` renders it); "
          "tokenize it with add_bos as the template wants (Llama 3 writes its own BOS).")
      .def_prop_ro(
          "chat_turn_end", [](const Model& mo) { return chat_turn_end(detect_chat_template(mo.file()).format); },
          "Text that ends an assistant turn in the model's chat format ('' for raw models): a stop string.");
}

}  // namespace kvforge::python
