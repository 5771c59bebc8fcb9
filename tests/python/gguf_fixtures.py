"""Small models written to GGUF by the tests themselves (random weights), so
architectures without a packaged model can still be checked against the
Hugging Face implementation with the very same weights."""
import numpy as np


def byte_level_vocab():
    """GPT-2's byte-to-unicode map: 256 single-byte tokens plus <|endoftext|>."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)] + ["<|endoftext|>"]


def add_byte_level_tokenizer(w):
    """GGUF tokenizer metadata of byte_level_vocab() (no merges, EOS 256)."""
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(byte_level_vocab())
    w.add_token_types([1] * 256 + [3])
    w.add_eos_token_id(256)


def padded_vocab(n_vocab):
    """byte_level_vocab() padded with placeholder tokens to n_vocab entries,
    and their GGUF token types (1 normal, 3 control, 5 unused). The first
    extra token is "Ġt" (" t"), the result of the one merge write_gpt2_gguf
    writes with llama_cpp=True. Enough for models whose text does not matter
    (speed shapes)."""
    tokens = byte_level_vocab()
    if n_vocab == len(tokens):
        return tokens, [1] * 256 + [3]
    n_pad = n_vocab - len(tokens) - 1
    assert n_pad >= 0
    tokens += ["\u0120t"] + [f"<|placeholder_{i}|>" for i in range(n_pad)]
    return tokens, [1] * 256 + [3] + [1] + [5] * n_pad


def add_llama_cpp_vocab(w, n_vocab):
    """Writes padded_vocab(n_vocab) as a GPT-2 BPE vocabulary that llama.cpp
    loads too (its one merge "Ġ t", llama.cpp's pre-tokenizer name), with
    token 256 as BOS and EOS."""
    tokens, types = padded_vocab(n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["\u0120 t"])
    w.add_bos_token_id(256)
    w.add_eos_token_id(256)


def randomize_(model, norm_base=1.0):
    """Random weights of the scale the reference tests use: norms norm_base +
    N(0, 0.1), every other parameter N(0, 0.15)."""
    import torch
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(norm_base + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.15)


def write_gpt2_gguf(path, hf_model, dtype, llama_cpp=False):
    """Writes a transformers GPT2LMHeadModel as a GGUF 'gpt2' model, its
    matrices as dtype: np.float32, np.float16 or "bf16".

    HF's Conv1D stores weights as [in, out]; GGUF wants ne0 = in, i.e. a numpy
    array of shape [out, in], hence the transposes. A vocabulary larger than
    the 257 byte-level tokens is padded with placeholders (padded_vocab).
    llama_cpp=True makes the file loadable by llama.cpp too: it writes a
    merge list (llama.cpp refuses BPE vocabularies without one; here the
    single merge "Ġ t", so the vocabulary must be padded) and llama.cpp's
    name of the GPT-2 pre-tokenizer, "gpt-2"."""
    import gguf
    cfg = hf_model.config
    sd = {k: v.detach().float().numpy() for k, v in hf_model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_context_length(cfg.n_positions)
    w.add_embedding_length(cfg.n_embd)
    w.add_feed_forward_length(4 * cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_head_count(cfg.n_head)
    w.add_layer_norm_eps(cfg.layer_norm_epsilon)
    w.add_file_type({np.float32: 0, np.float16: 1}.get(dtype, 32))  # 32: llama.cpp's MOSTLY_BF16
    tokens, types = padded_vocab(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2" if llama_cpp else "gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    if llama_cpp:
        assert "\u0120t" in tokens, "llama_cpp=True needs a padded vocabulary"
        w.add_token_merges(["\u0120 t"])
    w.add_bos_token_id(256)
    w.add_eos_token_id(256)

    def mat(name, arr):
        if dtype == "bf16":  # rounded to nearest even by torch; raw bytes [rows][2 cols]
            import torch
            raw = torch.from_numpy(np.ascontiguousarray(arr)).bfloat16().view(torch.int16).numpy().view(np.uint8)
            w.add_tensor(name, raw, raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor(name, np.ascontiguousarray(arr).astype(dtype))

    def vec(name, arr):  # norms and biases stay f32, as converters write them
        w.add_tensor(name, np.ascontiguousarray(arr).astype(np.float32))

    mat("token_embd.weight", sd["transformer.wte.weight"])
    mat("position_embd.weight", sd["transformer.wpe.weight"])
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        b = f"blk.{i}."
        vec(b + "attn_norm.weight", sd[p + "ln_1.weight"])
        vec(b + "attn_norm.bias", sd[p + "ln_1.bias"])
        mat(b + "attn_qkv.weight", sd[p + "attn.c_attn.weight"].T)
        vec(b + "attn_qkv.bias", sd[p + "attn.c_attn.bias"])
        mat(b + "attn_output.weight", sd[p + "attn.c_proj.weight"].T)
        vec(b + "attn_output.bias", sd[p + "attn.c_proj.bias"])
        vec(b + "ffn_norm.weight", sd[p + "ln_2.weight"])
        vec(b + "ffn_norm.bias", sd[p + "ln_2.bias"])
        mat(b + "ffn_up.weight", sd[p + "mlp.c_fc.weight"].T)
        vec(b + "ffn_up.bias", sd[p + "mlp.c_fc.bias"])
        mat(b + "ffn_down.weight", sd[p + "mlp.c_proj.weight"].T)
        vec(b + "ffn_down.bias", sd[p + "mlp.c_proj.bias"])
    vec("output_norm.weight", sd["transformer.ln_f.weight"])
    vec("output_norm.bias", sd["transformer.ln_f.bias"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def random_gpt2(seed=0, n_layer=3, n_embd=64, n_head=4, n_positions=128, vocab_size=257, init_std=0.2):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new")
    model = GPT2LMHeadModel(cfg)
    # Larger-than-default init (0.2) so the logits are not all near zero (a
    # weak test); init_std=None keeps transformers' own initialisation.
    if init_std is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, init_std)
    model.eval()
    return model


def _permute_for_adjacent_rope(w, n_head):
    """HF llama checkpoints rotate halves (i, i+d/2); llama GGUFs store Q/K rows
    reordered so that RoPE rotates adjacent pairs (2i, 2i+1)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def random_llama_like(kind, seed=0):
    """A small random LlamaForCausalLM ("llama", tied embeddings) or
    Qwen2ForCausalLM ("qwen2", QKV biases, separate output)."""
    import torch
    torch.manual_seed(seed)
    common = dict(vocab_size=257, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  rms_norm_eps=1e-5, rope_theta=10000.0)
    if kind == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM
        model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=True, **common))
    else:
        from transformers import Qwen2Config, Qwen2ForCausalLM
        model = Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=False, **common))
    randomize_(model)
    model.eval()
    return model


def write_llama_like_gguf(path, hf_model, kind):
    """Writes a random llama/qwen2 HF model as GGUF with the converters'
    conventions (f32 tensors)."""
    import gguf
    cfg = hf_model.config
    sd = {k: v.detach().float().numpy() for k, v in hf_model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), kind)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    add_byte_level_tokenizer(w)
    f32 = lambda name, a: w.add_tensor(name, np.ascontiguousarray(a).astype(np.float32))
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    f32("token_embd.weight", sd["model.embed_tokens.weight"])
    f32("output_norm.weight", sd["model.norm.weight"])
    if "lm_head.weight" in sd and not cfg.tie_word_embeddings:
        f32("output.weight", sd["lm_head.weight"])
    for i in range(cfg.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        q, k = sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"]
        if kind == "llama":
            q, k = _permute_for_adjacent_rope(q, nh), _permute_for_adjacent_rope(k, nkv)
        f32(b + "attn_q.weight", q)
        f32(b + "attn_k.weight", k)
        f32(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        for proj, name in (("q", "attn_q"), ("k", "attn_k"), ("v", "attn_v")):
            if p + f"self_attn.{proj}_proj.bias" in sd:
                f32(b + name + ".bias", sd[p + f"self_attn.{proj}_proj.bias"])
        f32(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        f32(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        f32(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        f32(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        f32(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        f32(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
