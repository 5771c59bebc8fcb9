"""Small random DeepSeek-V2/V3 models (transformers' DeepseekV2ForCausalLM /
DeepseekV3ForCausalLM) written to GGUF 'deepseek2' files the way llama.cpp's
converter writes them: attn_kv_b split into attn_k_b (per head W_UK^T,
[H][d_c][P]) and attn_v_b (per head W_UV, [H][V][d_c]), or kept fused
(legacy=True); experts stacked into 3-D tensors; key_length = d_c + R and
value_length = d_c with the per-head widths under key_length_mla /
value_length_mla and head_count_kv = 1 (MQA over the latent row); q_lora_rank
always written (0 for a direct attn_q)."""
import numpy as np

from gguf_fixtures import add_llama_cpp_vocab, randomize_

N_VOCAB = 300


def random_deepseek(version, seed=0, q_lora=True, yarn=False, n_layer=3, n_dense=1, sigmoid_bias=None, shape=None):
    """A tiny random DeepSeek model (shape: config entries that replace the
    tiny ones, e.g. a benchmark's). version 2: softmax gating, weights times
    routed_scaling_factor; version 3: sigmoid gating with the selection bias
    (e_score_correction_bias) and top-k renormalisation. n_group = topk_group
    = 1 (llama.cpp's deepseek2 does not group). Widths are multiples of 32 so
    that q8/q4 latent rows fit (d_c = 64, R = 32: row of 96)."""
    import torch
    torch.manual_seed(seed)
    common = dict(vocab_size=N_VOCAB, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
                  num_hidden_layers=n_layer, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
                  n_routed_experts=8, num_experts_per_tok=3, first_k_dense_replace=n_dense,
                  q_lora_rank=48 if q_lora else None, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=32,
                  v_head_dim=32, max_position_embeddings=4096, rms_norm_eps=1e-6, routed_scaling_factor=1.5,
                  tie_word_embeddings=False)
    common.update(shape or {})
    if yarn:  # a 4x extension of a 64-token training context
        common["max_position_embeddings"] = 256
        common["rope_parameters"] = dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                         original_max_position_embeddings=64, beta_fast=32, beta_slow=1,
                                         mscale=1.0, mscale_all_dim=1.0)
    if version == 2:
        from transformers import DeepseekV2Config, DeepseekV2ForCausalLM
        model = DeepseekV2ForCausalLM(DeepseekV2Config(topk_method="greedy", n_group=1, topk_group=1, **common))
    else:
        from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
        model = DeepseekV3ForCausalLM(DeepseekV3Config(n_group=1, topk_group=1, norm_topk_prob=True,
                                                       rope_interleave=True, **common))
    randomize_(model)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if "e_score_correction_bias" in name:
                b.copy_(0.1 * torch.randn_like(b))
    model.eval()
    return model


def write_deepseek2_gguf(path, hf_model, legacy=False, dtype=np.float32, drop=(), override=None):
    """drop: metadata keys and tensor names left out; override: {key: value}
    (bad-input tests)."""
    import gguf

    class Writer(gguf.GGUFWriter):
        def add_key_value(self, key, val, vtype, *args, **kwargs):
            if key not in drop:
                super().add_key_value(key, (override or {}).get(key, val), vtype, *args, **kwargs)

        def add_tensor(self, name, *args, **kwargs):
            if name not in drop:
                super().add_tensor(name, *args, **kwargs)

    cfg = hf_model.config
    sd = {k: v.detach().float().numpy() for k, v in hf_model.state_dict().items()}
    H, P, R, V = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
    dc = cfg.kv_lora_rank
    version = 3 if "V3" in type(hf_model).__name__ else 2
    w = Writer(str(path), "deepseek2")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_head_count(H)
    w.add_head_count_kv(H if legacy else 1)  # MLA runs as MQA over the one latent row
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_rope_dimension_count(R)
    w.add_leading_dense_block_count(cfg.first_k_dense_replace)
    w.add_vocab_size(cfg.vocab_size)
    w.add_q_lora_rank(cfg.q_lora_rank or 0)
    w.add_kv_lora_rank(dc)
    if legacy:
        w.add_key_length(P + R)
        w.add_value_length(V)
    else:
        w.add_key_length(dc + R)
        w.add_value_length(dc)
        w.add_key_length_mla(P + R)
        w.add_value_length_mla(V)
    w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
    w.add_expert_count(cfg.n_routed_experts)
    w.add_expert_used_count(cfg.num_experts_per_tok)
    w.add_expert_shared_count(cfg.n_shared_experts)
    w.add_expert_weights_scale(cfg.routed_scaling_factor)
    if version == 3:
        w.add_expert_weights_norm(True)
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    else:
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SOFTMAX)
    rp = cfg.rope_parameters
    if rp.get("rope_type") == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rp["factor"])
        w.add_rope_scaling_orig_ctx_len(rp["original_max_position_embeddings"])
        w.add_rope_scaling_yarn_log_mul(0.1 * rp["mscale_all_dim"])
    add_llama_cpp_vocab(w, cfg.vocab_size)

    def mat(name, a):
        w.add_tensor(name, np.ascontiguousarray(a).astype(dtype))

    def vec(name, a):
        w.add_tensor(name, np.ascontiguousarray(a).astype(np.float32))

    mat("token_embd.weight", sd["model.embed_tokens.weight"])
    vec("output_norm.weight", sd["model.norm.weight"])
    mat("output.weight", sd["lm_head.weight"])
    for i in range(cfg.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        vec(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        vec(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        a = p + "self_attn."
        if cfg.q_lora_rank:
            mat(b + "attn_q_a.weight", sd[a + "q_a_proj.weight"])
            vec(b + "attn_q_a_norm.weight", sd[a + "q_a_layernorm.weight"])
            mat(b + "attn_q_b.weight", sd[a + "q_b_proj.weight"])
        else:
            mat(b + "attn_q.weight", sd[a + "q_proj.weight"])
        mat(b + "attn_kv_a_mqa.weight", sd[a + "kv_a_proj_with_mqa.weight"])
        vec(b + "attn_kv_a_norm.weight", sd[a + "kv_a_layernorm.weight"])
        kv_b = sd[a + "kv_b_proj.weight"]
        if legacy:
            mat(b + "attn_kv_b.weight", kv_b)
        else:
            kv = kv_b.reshape(H, P + V, dc)
            mat(b + "attn_k_b.weight", kv[:, :P, :].transpose(0, 2, 1))
            mat(b + "attn_v_b.weight", kv[:, P:, :])
        mat(b + "attn_output.weight", sd[a + "o_proj.weight"])
        m = p + "mlp."
        if i < cfg.first_k_dense_replace:
            for proj, name in (("gate", "ffn_gate"), ("up", "ffn_up"), ("down", "ffn_down")):
                mat(b + name + ".weight", sd[m + f"{proj}_proj.weight"])
            continue
        vec(b + "ffn_gate_inp.weight", sd[m + "gate.weight"])
        if m + "gate.e_score_correction_bias" in sd:
            vec(b + "exp_probs_b.bias", sd[m + "gate.e_score_correction_bias"])
        gu = sd[m + "experts.gate_up_proj"]  # [E][2*I][d]: gate rows, then up rows
        I = cfg.moe_intermediate_size
        mat(b + "ffn_gate_exps.weight", gu[:, :I, :])
        mat(b + "ffn_up_exps.weight", gu[:, I:, :])
        mat(b + "ffn_down_exps.weight", sd[m + "experts.down_proj"])
        for proj, name in (("gate", "ffn_gate_shexp"), ("up", "ffn_up_shexp"), ("down", "ffn_down_shexp")):
            mat(b + name + ".weight", sd[m + f"shared_experts.{proj}_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def hf_logits(model, ids):
    import torch
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()
