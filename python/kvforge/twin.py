"""A differentiable PyTorch twin of a llama-family model, for learning which
KV heads need the full cache (SPEC.md §4; pip install './[train]').

Every attention head mixes two attentions with the gate of its KV head:

    out = alpha * Attn_full + (1 - alpha) * Attn_stream

where Attn_stream sees the first `sinks` tokens and the last `recent` ones
(the query itself included), the history kvforge's `window:W,sinks:S` cache
keeps. The model's weights come from the GGUF file (dequantized to float,
frozen); alpha [n_layer, n_kv_head] is the only parameter. Gradients are
PyTorch's autograd.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

# What differs between the supported architectures, as data: how RoPE pairs
# the dimensions of a head. llama GGUFs store Q/K rows permuted so that RoPE
# rotates adjacent pairs (2i, 2i+1); qwen2 rotates halves (i, i + d/2).
ROPE_PAIRING = {"llama": "adjacent", "qwen2": "halves"}


class TwinError(ValueError):
    """A model or input the twin cannot handle (one clear message)."""


@dataclass
class TwinConfig:
    arch: str
    n_vocab: int
    d_model: int
    n_layer: int
    n_head: int
    n_kv_head: int
    head_dim: int
    d_ff: int
    norm_eps: float
    rope_base: float
    n_rot: int
    n_ctx_train: int


def _field(reader, key, default=None):
    f = reader.get_field(key)
    return default if f is None else f.contents()


def _read_gguf(path: str):
    """(TwinConfig, {tensor name: float32 numpy array [rows][cols]})."""
    import gguf
    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError) as e:
        raise TwinError(f"cannot read GGUF file {path}: {e}") from e
    arch = _field(reader, "general.architecture")
    if arch not in ROPE_PAIRING:
        raise TwinError(f"the PyTorch twin supports the architectures {sorted(ROPE_PAIRING)}, not {arch!r} ({path})")
    n_head = int(_field(reader, f"{arch}.attention.head_count"))
    d_model = int(_field(reader, f"{arch}.embedding_length"))
    head_dim = int(_field(reader, f"{arch}.attention.key_length", d_model // n_head))
    tensors = {}
    for t in reader.tensors:
        try:
            a = gguf.quants.dequantize(t.data, t.tensor_type)
        except NotImplementedError as e:
            raise TwinError(f"the twin cannot dequantize tensor {t.name} ({t.tensor_type.name}) of {path}") from e
        a = np.asarray(a, dtype=np.float32).reshape([int(n) for n in reversed(t.shape)])
        tensors[t.name] = a if a.flags.writeable else a.copy()  # f32 tensors are views on the read-only map
    if "rope_freqs.weight" in tensors or _field(reader, f"{arch}.rope.scaling.type", "none") not in ("none", ""):
        raise TwinError(f"the twin does not implement RoPE scaling ({path})")
    cfg = TwinConfig(
        arch=arch, n_vocab=tensors["token_embd.weight"].shape[0], d_model=d_model,
        n_layer=int(_field(reader, f"{arch}.block_count")), n_head=n_head,
        n_kv_head=int(_field(reader, f"{arch}.attention.head_count_kv", n_head)), head_dim=head_dim,
        d_ff=int(_field(reader, f"{arch}.feed_forward_length")),
        norm_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_base=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        n_rot=int(_field(reader, f"{arch}.rope.dimension_count", head_dim)),
        n_ctx_train=int(_field(reader, f"{arch}.context_length", 2048)))
    return cfg, tensors


class Twin(torch.nn.Module):
    """The model of a GGUF file in PyTorch with a soft gate per (layer, KV head).

    Twin.from_gguf(path, sinks=16, recent=64). forward(tokens [B, T]) gives
    logits [B, T, n_vocab]; hidden() the final hidden states; token_logprobs()
    log p of each next token. Right-padded batches are fine (causal: padding
    never changes earlier positions).
    """

    def __init__(self, cfg: TwinConfig, tensors: dict, sinks: int = 16, recent: int = 64,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.cfg = cfg
        self.set_stream(sinks, recent)
        self.alpha = torch.nn.Parameter(torch.ones(cfg.n_layer, cfg.n_kv_head, dtype=dtype))

        def w(name, required=True):
            if name not in tensors:
                if required:
                    raise TwinError(f"tensor {name} is missing from the GGUF file")
                return None
            return torch.from_numpy(tensors[name]).to(dtype)

        # Frozen weights are buffers: no gradients, moved with .to().
        self.register_buffer("tok_embd", w("token_embd.weight"), persistent=False)  # [n_vocab][d_model]
        out = w("output.weight", required=False)
        self.register_buffer("output", out if out is not None else self.tok_embd, persistent=False)
        self.register_buffer("out_norm", w("output_norm.weight"), persistent=False)
        self.layers = []
        for i in range(cfg.n_layer):
            b = f"blk.{i}."
            self.layers.append({k: w(b + n, required=not n.endswith(".bias")) for k, n in (
                ("attn_norm", "attn_norm.weight"), ("wq", "attn_q.weight"), ("wk", "attn_k.weight"),
                ("wv", "attn_v.weight"), ("bq", "attn_q.bias"), ("bk", "attn_k.bias"), ("bv", "attn_v.bias"),
                ("wo", "attn_output.weight"), ("ffn_norm", "ffn_norm.weight"), ("w_gate", "ffn_gate.weight"),
                ("w_up", "ffn_up.weight"), ("w_down", "ffn_down.weight"))})
        self.requires_grad_(False)
        self.alpha.requires_grad_(True)

    @classmethod
    def from_gguf(cls, path: str, sinks: int = 16, recent: int = 64, dtype: torch.dtype = torch.float32) -> "Twin":
        cfg, tensors = _read_gguf(path)
        return cls(cfg, tensors, sinks=sinks, recent=recent, dtype=dtype)

    def set_stream(self, sinks: int, recent: int) -> None:
        """The streaming history: `sinks` first tokens plus the last `recent` (>= 1)."""
        if sinks < 0 or recent < 1:
            raise TwinError(f"streaming attention needs sinks >= 0 and recent >= 1 (got {sinks}, {recent})")
        self.sinks, self.recent = int(sinks), int(recent)

    def gates(self) -> np.ndarray:
        """alpha as a float64 numpy array [n_layer, n_kv_head] (a copy)."""
        return self.alpha.detach().cpu().double().numpy().copy()

    def set_gates(self, alpha) -> None:
        a = torch.as_tensor(np.asarray(alpha, dtype=np.float64), dtype=self.alpha.dtype)
        if tuple(a.shape) != tuple(self.alpha.shape):
            raise TwinError(f"gates of shape {tuple(a.shape)} do not fit this model "
                            f"(expected [n_layer, n_kv_head] = {list(self.alpha.shape)})")
        with torch.no_grad():
            self.alpha.copy_(a)

    # -- the forward pass -------------------------------------------------

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x: [B][T][heads][head_dim]; cos, sin: [T][n_rot / 2]."""
        n_rot = self.cfg.n_rot
        r, rest = x[..., :n_rot], x[..., n_rot:]
        if ROPE_PAIRING[self.cfg.arch] == "adjacent":
            a, b = r[..., 0::2], r[..., 1::2]
        else:
            a, b = r[..., :n_rot // 2], r[..., n_rot // 2:]
        c, s = cos[None, :, None, :], sin[None, :, None, :]
        ra, rb = a * c - b * s, a * s + b * c
        if ROPE_PAIRING[self.cfg.arch] == "adjacent":
            r = torch.stack((ra, rb), dim=-1).flatten(-2)
        else:
            r = torch.cat((ra, rb), dim=-1)
        return torch.cat((r, rest), dim=-1)

    def _norm(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg.norm_eps) * w

    def masks(self, T: int, n_past: int = 0):
        """Boolean [T][n_past + T] masks (True = visible), full causal and
        streaming, of T queries at positions n_past.. (after a shared prefix of
        n_past tokens) over the keys at 0..n_past + T - 1."""
        i = torch.arange(n_past, n_past + T)[:, None]
        j = torch.arange(n_past + T)[None, :]
        causal = j <= i
        return causal, causal & ((j < self.sinks) | (i - j < self.recent))

    def _check(self, tokens, n_past: int = 0) -> torch.Tensor:
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        if tokens.dim() == 1:
            tokens = tokens[None]
        T = tokens.shape[1]
        if n_past + T > self.cfg.n_ctx_train:
            raise TwinError(f"{n_past + T} tokens exceed the {self.cfg.n_ctx_train} learned positions of this model")
        if T == 0 or tokens.min() < 0 or tokens.max() >= self.cfg.n_vocab:
            raise TwinError(f"token ids must be in [0, {self.cfg.n_vocab}) and at least one token")
        return tokens

    def _layers(self, tokens: torch.Tensor, past: Optional[list] = None) -> tuple:
        """Runs every layer over tokens [B, T] (positions n_past.. after the
        shared prefix `past`, a list per layer of its keys and values
        [1][n_kv_head][n_past][head_dim], or none). Returns the final hidden
        states [B, T, d_model] (after the output norm) and this pass's keys and
        values per layer (the prefix of a later pass)."""
        cfg = self.cfg
        B, T = tokens.shape
        n_past = 0 if past is None else past[0][0].shape[2]
        dtype = self.alpha.dtype
        inv = cfg.rope_base ** (-torch.arange(0, cfg.n_rot, 2, dtype=torch.float64) / cfg.n_rot)
        ang = torch.arange(n_past, n_past + T, dtype=torch.float64)[:, None] * inv[None, :]  # [T][n_rot / 2]
        cos, sin = ang.cos().to(dtype), ang.sin().to(dtype)
        full_mask, stream_mask = self.masks(T, n_past)
        g = cfg.n_head // cfg.n_kv_head
        # Queries of one KV group laid end to end: [B][n_kv_head][g * T][head_dim].
        full_mask, stream_mask = full_mask.repeat(g, 1), stream_mask.repeat(g, 1)
        scale = 1.0 / math.sqrt(cfg.head_dim)
        x = self.tok_embd[tokens]  # [B][T][d_model]
        kv = []
        for l, L in enumerate(self.layers):
            h = self._norm(x, L["attn_norm"])
            q, k, v = (F.linear(h, L[w], L[b]) for w, b in (("wq", "bq"), ("wk", "bk"), ("wv", "bv")))
            q = self._rope(q.view(B, T, cfg.n_head, cfg.head_dim), cos, sin)
            k = self._rope(k.view(B, T, cfg.n_kv_head, cfg.head_dim), cos, sin)
            v = v.view(B, T, cfg.n_kv_head, cfg.head_dim)
            q = q.view(B, T, cfg.n_kv_head, g, cfg.head_dim).permute(0, 2, 3, 1, 4).reshape(B, cfg.n_kv_head, g * T, -1)
            k, v = k.transpose(1, 2), v.transpose(1, 2)  # [B][n_kv_head][T][head_dim]
            kv.append((k, v))
            if past is not None:  # [B][n_kv_head][n_past + T][head_dim]
                k = torch.cat((past[l][0].expand(B, -1, -1, -1), k), dim=2)
                v = torch.cat((past[l][1].expand(B, -1, -1, -1), v), dim=2)
            full = F.scaled_dot_product_attention(q, k, v, attn_mask=full_mask, scale=scale)
            stream = F.scaled_dot_product_attention(q, k, v, attn_mask=stream_mask, scale=scale)
            a = self.alpha[l].view(1, cfg.n_kv_head, 1, 1)
            o = a * full + (1 - a) * stream  # [B][n_kv_head][g * T][head_dim]
            o = o.view(B, cfg.n_kv_head, g, T, cfg.head_dim).permute(0, 3, 1, 2, 4).reshape(B, T, -1)
            x = x + F.linear(o, L["wo"])
            h = self._norm(x, L["ffn_norm"])
            x = x + F.linear(F.silu(F.linear(h, L["w_gate"])) * F.linear(h, L["w_up"]), L["w_down"])
        return self._norm(x, self.out_norm), kv

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states (after the output norm) [B, T, d_model]."""
        return self._layers(self._check(tokens))[0]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, n_vocab] (tokens [B, T] or [T])."""
        return F.linear(self.hidden(tokens), self.output)

    def token_logprobs(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """[B, T - 1 - start]: log p(tokens[:, t + 1] | tokens[:, :t + 1]) for
        t >= start (the output layer, the largest matrix of a small model,
        runs only on those positions)."""
        tokens = self._check(tokens)
        logits = F.linear(self.hidden(tokens)[:, start:-1], self.output)
        return torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, start + 1:, None])[..., 0]

    def group_logprobs(self, prompt, answers: list) -> list:
        """log p of each answer's tokens after one shared prompt: a list of
        [len(answer)] tensors, as token_logprobs(prompt + answer, len(prompt) - 1)
        gives them, but the prompt's layers run once for the whole group
        (answers right-padded into one batch; causal, so padding changes
        nothing before it)."""
        prompt = self._check(prompt)
        if prompt.shape[0] != 1 or not answers or min(len(a) for a in answers) == 0:
            raise TwinError("group_logprobs needs one prompt and non-empty answers")
        n = max(len(a) for a in answers)
        ans = self._check([list(a) + [a[-1]] * (n - len(a)) for a in answers], prompt.shape[1])  # [G][n]
        h_prompt, past = self._layers(prompt)
        h_ans = self._layers(ans, past)[0]  # [G][n][d_model]
        # The hidden state before answer token t: the prompt's last, then the answer's.
        h = torch.cat((h_prompt[:, -1:].expand(len(answers), -1, -1), h_ans[:, :-1]), dim=1)
        lp = torch.log_softmax(F.linear(h, self.output), dim=-1).gather(-1, ans[..., None])[..., 0]  # [G][n]
        return [lp[i, :len(a)] for i, a in enumerate(answers)]

