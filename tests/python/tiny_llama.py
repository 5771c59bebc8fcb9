"""A tiny random-weight llama GGUF written with numpy and the gguf package
(no torch): the model the Python package's tests load, fast to write and run."""
import numpy as np

from gguf_fixtures import add_byte_level_tokenizer

TINY = dict(n_layer=2, d_model=64, n_head=4, n_kv_head=2, d_ff=128, n_ctx=256)


def write_tiny_llama(path, seed=0, n_layer=2, d_model=64, n_head=4, n_kv_head=2, d_ff=128, n_ctx=256, scale=0.15,
                     mute=()):
    """Writes a llama GGUF (f32 tensors, tied embeddings, byte-level vocabulary
    of 257 tokens, EOS = 256) with N(0, scale) weights and norms near 1. The
    KV heads in `mute`, (layer, KV head) pairs, have a zero output projection:
    nothing the model computes depends on them."""
    import gguf
    rng = np.random.default_rng(seed)
    head_dim = d_model // n_head
    n_vocab = 257
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(n_ctx)
    w.add_embedding_length(d_model)
    w.add_feed_forward_length(d_ff)
    w.add_block_count(n_layer)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    add_byte_level_tokenizer(w)

    def mat(name, rows, cols, zero_cols=()):  # GGUF shapes are [rows][cols] in numpy order
        m = (scale * rng.standard_normal((rows, cols))).astype(np.float32)
        for c in zero_cols:
            m[:, c] = 0.0
        w.add_tensor(name, m)

    def norm(name):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(d_model)).astype(np.float32))

    mat("token_embd.weight", n_vocab, d_model)
    norm("output_norm.weight")
    for i in range(n_layer):
        b = f"blk.{i}."
        mat(b + "attn_q.weight", n_head * head_dim, d_model)
        mat(b + "attn_k.weight", n_kv_head * head_dim, d_model)
        mat(b + "attn_v.weight", n_kv_head * head_dim, d_model)
        group = n_head // n_kv_head  # query heads per KV head
        muted = [slice(j * head_dim, (j + 1) * head_dim) for j in range(n_head) if (i, j // group) in mute]
        mat(b + "attn_output.weight", d_model, n_head * head_dim, muted)
        norm(b + "attn_norm.weight")
        norm(b + "ffn_norm.weight")
        mat(b + "ffn_gate.weight", d_ff, d_model)
        mat(b + "ffn_up.weight", d_ff, d_model)
        mat(b + "ffn_down.weight", d_model, d_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
