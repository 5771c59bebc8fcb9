"""Small random models of the architectures kvforge loads besides GPT-2 and
plain llama/qwen2 (plus Llama 3.1+ rope scaling), built with Hugging Face transformers and written to GGUF the way
llama.cpp's convert_hf_to_gguf.py writes them (names, metadata keys, Q/K row
order, Gemma's shifted norms), with a vocabulary llama.cpp accepts too, so
one file is checked against both references.

ARCHS maps a GGUF architecture name to (transformers config class, model
class, config overrides). Widths are tiny (64) so each test runs in seconds;
the layer counts cover each architecture's per-layer pattern (SmolLM3's
RoPE-less 4th layer, Gemma 3's five sliding layers then a global one)."""
import numpy as np

from gguf_fixtures import _permute_for_adjacent_rope, add_llama_cpp_vocab, randomize_

N_VOCAB = 320  # > 257: padded_vocab then holds the merge llama.cpp needs
COMMON = dict(vocab_size=N_VOCAB, hidden_size=64, intermediate_size=128, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, bos_token_id=256,
              eos_token_id=256)


def _archs():
    import transformers as t
    return {
        # Qwen3: head_dim 32 != hidden / heads, as the real ones (128 vs 64).
        "qwen3": (t.Qwen3Config, t.Qwen3ForCausalLM, dict(num_hidden_layers=2, head_dim=32, rms_norm_eps=1e-6,
                                                            tie_word_embeddings=True)),
        # Llama 3.1+ rope scaling, which the converter bakes into rope_freqs
        # (original context 64 puts head_dim 16's frequencies in all three bands).
        "llama3": (t.LlamaConfig, t.LlamaForCausalLM, dict(
            num_hidden_layers=2, rope_parameters=dict(rope_type="llama3", rope_theta=10000.0, factor=8.0,
                                                      low_freq_factor=1.0, high_freq_factor=4.0,
                                                      original_max_position_embeddings=64))),
        "smollm3": (t.SmolLM3Config, t.SmolLM3ForCausalLM, dict(num_hidden_layers=4, rms_norm_eps=1e-6)),
        # Phi-3 with partial rotary (Phi-4-mini's 0.75; here 0.5 of 16 dims).
        "phi3": (t.Phi3Config, t.Phi3ForCausalLM, dict(num_hidden_layers=2, rms_norm_eps=1e-5,
                                                       partial_rotary_factor=0.5)),
        # Phi-3.5 / Phi-4-mini LongRoPE: short factors up to the original
        # context (256 here: llama.cpp's smallest context), long ones beyond,
        # cos/sin scaled by sqrt(1 + ln(512 / 256) / ln(256)).
        "phi3-longrope": (t.Phi3Config, t.Phi3ForCausalLM, dict(
            num_hidden_layers=2, original_max_position_embeddings=256,
            rope_parameters=dict(rope_type="longrope", rope_theta=10000.0, partial_rotary_factor=0.5,
                                 short_factor=[1.0, 1.5, 2.0, 3.0], long_factor=[1.0, 4.0, 9.0, 20.0]))),
        "gemma2": (t.Gemma2Config, t.Gemma2ForCausalLM, dict(num_hidden_layers=2, head_dim=32,
                                                              query_pre_attn_scalar=32, attn_logit_softcapping=5.0,
                                                              final_logit_softcapping=3.0)),
        # Gemma 3 with the linear RoPE scaling of its 4B+ models on the global layers.
        "gemma3": (t.Gemma3TextConfig, t.Gemma3ForCausalLM, dict(
            num_hidden_layers=6, head_dim=16, query_pre_attn_scalar=16,
            rope_parameters={"full_attention": dict(rope_type="linear", factor=8.0, rope_theta=1e6),
                             "sliding_attention": dict(rope_type="default", rope_theta=10000.0)})),
    }


def random_arch_model(arch, window=None, seed=0):
    """A random HF model of `arch`; `window` sets the sliding window of the
    architectures that have one (gemma2, gemma3, phi3)."""
    import torch
    cls_cfg, cls_model, extra = _archs()[arch]
    kw = dict(COMMON, **extra)
    if window is not None:
        kw["sliding_window"] = window
    torch.manual_seed(seed)
    model = cls_model(cls_cfg(**kw))
    randomize_(model, 0.0 if arch.startswith("gemma") else 1.0)  # Gemma's norms are 1 + w, the others w
    model.eval()
    return model


def _rope(cfg, layer_type="full_attention"):
    rp = cfg.rope_parameters
    return rp.get(layer_type, rp)


def _llama3_rope_factors(rope, head_dim):
    """The per-pair frequency divisors convert_hf_to_gguf.py writes as
    rope_freqs for rope_type "llama3"."""
    import math
    base, factor = rope["rope_theta"], rope["factor"]
    lo, hi, old = rope["low_freq_factor"], rope["high_freq_factor"], rope["original_max_position_embeddings"]
    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * base ** (i / head_dim)
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


GGUF_ARCH = {"llama3": "llama", "phi3-longrope": "phi3"}


def write_arch_gguf(path, model, arch):
    """Writes `model` as a GGUF of architecture `arch` (f32 tensors; the
    variants in GGUF_ARCH under their GGUF name)."""
    import gguf
    import math
    arch = GGUF_ARCH.get(arch, arch)
    cfg = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // nh
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(_rope(cfg)["rope_theta"])
    if _rope(cfg).get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(_rope(cfg)["factor"])
    if _rope(cfg).get("rope_type") == "longrope":  # as convert_hf_to_gguf.py's Phi3MiniModel
        orig = _rope(cfg)["original_max_position_embeddings"]
        w.add_rope_scaling_orig_ctx_len(orig)
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(cfg.max_position_embeddings / orig) / math.log(orig)))
    rope_dims = int(_rope(cfg).get("partial_rotary_factor", 1.0) * head_dim)
    if rope_dims != head_dim:
        w.add_rope_dimension_count(rope_dims)
    if arch in ("gemma2", "gemma3", "phi3"):
        w.add_sliding_window(cfg.sliding_window or 0)
    if arch == "gemma2":
        w.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
        w.add_final_logit_softcapping(cfg.final_logit_softcapping)
    add_llama_cpp_vocab(w, N_VOCAB)
    w.add_add_bos_token(False)

    shift = 1.0 if arch.startswith("gemma") else 0.0  # Gemma's norms are x * (1 + w)
    f32 = lambda name, a: w.add_tensor(name, np.ascontiguousarray(a).astype(np.float32))
    norm = lambda name, a: f32(name, a + shift)
    f32("token_embd.weight", sd["model.embed_tokens.weight"])
    if _rope(cfg).get("rope_type") == "llama3":
        f32("rope_freqs.weight", _llama3_rope_factors(_rope(cfg), head_dim))
    if _rope(cfg).get("rope_type") == "longrope":
        f32("rope_factors_long.weight", np.array(_rope(cfg)["long_factor"]))
        f32("rope_factors_short.weight", np.array(_rope(cfg)["short_factor"]))
    norm("output_norm.weight", sd["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        f32("output.weight", sd["lm_head.weight"])
    for i in range(cfg.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        if arch == "phi3":  # fused as in the checkpoint
            f32(b + "attn_qkv.weight", sd[p + "self_attn.qkv_proj.weight"])
            f32(b + "ffn_up.weight", sd[p + "mlp.gate_up_proj.weight"])
        else:
            q, k = sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"]
            if arch in ("llama", "smollm3"):  # the converter's LlamaModel permutation (RoPE over adjacent pairs)
                q, k = _permute_for_adjacent_rope(q, nh), _permute_for_adjacent_rope(k, nkv)
            f32(b + "attn_q.weight", q)
            f32(b + "attn_k.weight", k)
            f32(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
            f32(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
            f32(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        if p + "self_attn.q_norm.weight" in sd:
            norm(b + "attn_q_norm.weight", sd[p + "self_attn.q_norm.weight"])
            norm(b + "attn_k_norm.weight", sd[p + "self_attn.k_norm.weight"])
        f32(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        f32(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
        norm(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        if arch.startswith("gemma"):
            norm(b + "post_attention_norm.weight", sd[p + "post_attention_layernorm.weight"])
            norm(b + "ffn_norm.weight", sd[p + "pre_feedforward_layernorm.weight"])
            norm(b + "post_ffw_norm.weight", sd[p + "post_feedforward_layernorm.weight"])
        else:
            norm(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
