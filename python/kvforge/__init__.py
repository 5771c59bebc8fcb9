"""kvforge: Python API of the kvforge inference engine.

    import kvforge
    model = kvforge.Model.load("SmolLM2-135M-Instruct.Q4_1.gguf")
    ctx = kvforge.Context(model, n_ctx=512, kv="window:256,sinks:4")
    logits = ctx.eval(model.tokenize("The capital of France is"))   # numpy [n_vocab]
    out = ctx.generate("Once upon a time", n_predict=32, temperature=0.7, seed=1)
    print(model.detokenize(out.tokens), out.logprobs)
    batch = kvforge.BatchContext(model, n_seqs=2)         # several sequences, one forward pass
    batch.add_sequence(1)
    last0, last1 = batch.decode([(0, model.tokenize("Hi")), (1, model.tokenize("Bye"))])

Everything runs in the C++ engine (kvforge._core); this module only adds
keyword arguments and a streaming iterator on top.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np

from ._core import (BatchContext, Error, GenerateParams, GenerateResult, Model, ModelConfig, NeedleCase,
                    SamplingParams, needle_answer_correct, needle_case)
from . import _core

__all__ = ["BatchContext", "Context", "Error", "GenerateParams", "GenerateResult", "Model", "ModelConfig",
           "NeedleCase", "SamplingParams", "generate_params", "needle_answer_correct", "needle_case"]

Prompt = Union[str, Sequence[int]]

_SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n", "seed")
_GENERATE_FIELDS = ("n_predict", "stop", "ignore_eos", "use_cache", "context_shift", "n_keep")


def generate_params(**options) -> GenerateParams:
    """GenerateParams from keyword arguments: the fields of GenerateParams and
    of SamplingParams (temperature, top_k, ...) by name; unknown names raise
    TypeError, bad values kvforge.Error."""
    params = GenerateParams()
    sampling = params.sampling
    for name, value in options.items():
        if name in _SAMPLING_FIELDS:
            setattr(sampling, name, value)
        elif name in _GENERATE_FIELDS:
            if name == "stop":
                value = [value] if isinstance(value, str) else list(value)
            setattr(params, name, value)
        else:
            raise TypeError(f"unknown generation option {name!r}; known: "
                            f"{', '.join(_GENERATE_FIELDS + _SAMPLING_FIELDS)}")
    sampling.validate()
    params.sampling = sampling
    return params


class Context(_core.Context):
    """One running sequence over a Model (its KV cache, threads and buffers).

    Context(model, n_ctx=0, n_batch=256, n_threads=0, kv="full",
    mla_attn="absorbed"). The model
    stays alive while the context exists. Use one Context per thread.
    """

    def set_gates(self, alpha, sinks: int = 16, recent: int = 64) -> None:
        """Soft gates from the next eval on: every head attends
        alpha * full + (1 - alpha) * (its first `sinks` and last `recent`
        tokens); alpha [n_layer, n_kv_head] in [0, 1]. Needs kv="full"."""
        _core.set_gates(self, np.ascontiguousarray(alpha, dtype=np.float32), sinks, recent)

    def _tokens(self, prompt: Prompt) -> list:
        if isinstance(prompt, str):
            return self.model.tokenize(prompt)
        return list(prompt)

    def generate(self, prompt: Prompt, *, on_text: Optional[Callable[[str], None]] = None,
                 **options) -> GenerateResult:
        """Evaluates the prompt (text or token ids) after what the context
        holds, then samples. options: see generate_params. The result has
        tokens, logprobs (numpy), stop_reason, timings; its text is
        model.detokenize(result.tokens)."""
        return _core.generate(self, self._tokens(prompt), generate_params(**options), on_text)

    def stream(self, prompt: Prompt, **options) -> Iterator[str]:
        """Like generate, yielding text as it is produced. The engine runs in
        a worker thread; leaving the loop early stops it at the next token."""
        chunks: queue.Queue = queue.Queue()
        stop = threading.Event()
        done = object()

        class _Stopped(Exception):
            pass

        def on_text(text: str) -> None:
            if stop.is_set():
                raise _Stopped()
            chunks.put(text)

        def work() -> None:
            try:
                self.generate(prompt, on_text=on_text, **options)
                chunks.put(done)
            except _Stopped:
                chunks.put(done)
            except BaseException as e:  # handed to the consumer
                chunks.put(e)

        generate_params(**options)  # bad options raise here, in the caller
        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            while True:
                item = chunks.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()
