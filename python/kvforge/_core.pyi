"""kvforge engine bindings (use the kvforge package, not this module)"""

from collections.abc import Callable, Sequence
from typing import Annotated

import numpy
from numpy.typing import NDArray


class Error(RuntimeError):
    pass

class ModelConfig:
    """Architecture-independent shape of a loaded model (read-only)"""

    @property
    def arch(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def n_vocab(self) -> int: ...

    @property
    def n_ctx_train(self) -> int: ...

    @property
    def d_model(self) -> int: ...

    @property
    def n_layer(self) -> int: ...

    @property
    def n_head(self) -> int: ...

    @property
    def n_kv_head(self) -> int: ...

    @property
    def head_dim_k(self) -> int:
        """per head: queries and keys"""

    @property
    def head_dim_v(self) -> int:
        """per head: values and the attention output"""

    @property
    def d_ff(self) -> int: ...

    @property
    def norm_eps(self) -> float: ...

class Model:
    """A loaded GGUF model; immutable, shared by any number of Contexts"""

    @staticmethod
    def load(path: str, repack: bool = True) -> Model:
        """
        Loads a GGUF file. repack=False keeps the file's weight layout (A/B measurements).
        """

    @property
    def config(self) -> ModelConfig: ...

    @property
    def weight_bytes(self) -> int: ...

    @property
    def bos(self) -> int: ...

    @property
    def eos(self) -> int: ...

    def tokenize(self, text: str, add_bos: bool = True, parse_special: bool = True) -> list[int]:
        """
        Token ids of text (BOS prepended when add_bos and the vocabulary asks for it).
        """

    def detokenize(self, tokens: Sequence[int], keep_special: bool = False) -> str:
        """Text of token ids (ill-formed UTF-8 replaced by U+FFFD)."""

    def token_to_piece(self, token: int) -> bytes:
        """Raw bytes of one token (may be part of a UTF-8 character)."""

    def is_end_of_generation(self, token: int) -> bool: ...

    def chat_prompt(self, messages: Sequence[tuple[str, str]], add_generation_prompt: bool = True) -> str:
        """
        The prompt text of [(role, content), ...] in the model's chat template (as `kvforge chat` renders it); tokenize it with add_bos as the template wants (Llama 3 writes its own BOS).
        """

    @property
    def chat_turn_end(self) -> str:
        """
        Text that ends an assistant turn in the model's chat format ('' for raw models): a stop string.
        """

class Context:
    """
    One running sequence over a Model: its KV cache, threads and buffers. Not shared between threads (one Context per thread).
    """

    def __init__(self, model: Model, n_ctx: int = 0, n_batch: int = 256, n_threads: int = 0, kv: str = 'full', mla_attn: str = 'absorbed') -> None:
        """
        n_ctx: cache capacity in tokens (0 = min(training context, 4096)); n_threads: 0 = physical cores; kv: a cache policy as spelled by the CLI's --kv (e.g. 'window:256,sinks:4+q8'); mla_attn: latent (MLA) attention path, as the CLI's --mla-attn (absorbed, naive, auto).
        """

    @property
    def n_past(self) -> int: ...

    @property
    def n_ctx(self) -> int: ...

    @property
    def n_threads(self) -> int: ...

    @property
    def model(self) -> Model: ...

    def reset(self) -> None:
        """Empties the cache (n_past = 0)."""

    def eval(self, tokens: Sequence[int], all_logits: bool = False) -> object:
        """
        Appends tokens to the sequence; returns the logits float32 [n_vocab] of the last token, or [len(tokens), n_vocab] when all_logits.
        """

    def logprobs(self, tokens: Sequence[int]) -> Annotated[NDArray[numpy.float32], dict(shape=(None,))]:
        """
        Appends tokens to the sequence; returns float32 [len(tokens) - 1]: log p(tokens[i + 1] | everything before) under the model's raw distribution.
        """

class BatchContext:
    """
    Several sequences over a Model in one multi-sequence (paged) KV cache, decoded together. Sequence 0 exists from the start (and after reset). Not shared between threads.
    """

    def __init__(self, model: Model, n_seqs: int, n_ctx: int = 0, n_blocks: int = 0, n_batch: int = 256, n_threads: int = 0, kv: str = 'full') -> None:
        """
        n_seqs: sequence ids 0 .. n_seqs-1; n_ctx: most tokens of one sequence (0 = min(training context, 4096)); n_blocks: cache blocks of 16 tokens shared by all sequences (0 = enough for every sequence to reach n_ctx); n_batch: most tokens of one decode() in all; kv: a full-history policy as spelled by the CLI's --kv (e.g. 'full+q8').
        """

    @property
    def n_ctx(self) -> int: ...

    @property
    def n_threads(self) -> int: ...

    @property
    def model(self) -> Model: ...

    def add_sequence(self, seq: int) -> None:
        """Adds an empty sequence."""

    def remove_sequence(self, seq: int) -> None:
        """Removes a sequence and releases its blocks."""

    def has_sequence(self, seq: int) -> bool: ...

    def fork(self, src: int, dst: int) -> None:
        """A new sequence dst sharing all of src's cache (copied on write)."""

    def truncate(self, seq: int, n_keep: int) -> None:
        """Keeps the first n_keep tokens of a sequence."""

    def n_past(self, seq: int) -> int:
        """Tokens a sequence holds."""

    def reset(self) -> None:
        """Removes every sequence, then adds sequence 0."""

    def decode(self, runs: Sequence[tuple[int, Sequence[int]]], all_logits: bool = False) -> list:
        """
        Appends tokens to several sequences in one forward pass: runs [(seq, tokens), ...], one run per sequence, at most n_batch tokens in all. Returns one float32 array per run: the logits [n_vocab] of its last token, or [len(tokens), n_vocab] when all_logits; each bit-identical to evaluating the run alone.
        """

class SamplingParams:
    """Sampler settings (see src/model/sampler.h for the order of steps)"""

    def __init__(self) -> None: ...

    @property
    def temperature(self) -> float:
        """0 = greedy"""

    @temperature.setter
    def temperature(self, arg: float, /) -> None: ...

    @property
    def top_k(self) -> int:
        """0 = off"""

    @top_k.setter
    def top_k(self, arg: int, /) -> None: ...

    @property
    def top_p(self) -> float:
        """1 = off; in (0, 1]"""

    @top_p.setter
    def top_p(self, arg: float, /) -> None: ...

    @property
    def min_p(self) -> float:
        """0 = off; in [0, 1]"""

    @min_p.setter
    def min_p(self, arg: float, /) -> None: ...

    @property
    def repeat_penalty(self) -> float:
        """1 = off; > 0"""

    @repeat_penalty.setter
    def repeat_penalty(self, arg: float, /) -> None: ...

    @property
    def repeat_last_n(self) -> int:
        """accepted tokens the penalty looks at"""

    @repeat_last_n.setter
    def repeat_last_n(self, arg: int, /) -> None: ...

    @property
    def seed(self) -> int: ...

    @seed.setter
    def seed(self, arg: int, /) -> None: ...

    def validate(self) -> None:
        """Raises kvforge.Error naming a bad field."""

class GenerateParams:
    """Generation settings"""

    def __init__(self) -> None: ...

    @property
    def n_predict(self) -> int:
        """max new tokens (-1 = until EOS or context full)"""

    @n_predict.setter
    def n_predict(self, arg: int, /) -> None: ...

    @property
    def sampling(self) -> SamplingParams: ...

    @sampling.setter
    def sampling(self, arg: SamplingParams, /) -> None: ...

    @property
    def stop(self) -> list[str]:
        """stop strings (not emitted)"""

    @stop.setter
    def stop(self, arg: Sequence[str], /) -> None: ...

    @property
    def ignore_eos(self) -> bool: ...

    @ignore_eos.setter
    def ignore_eos(self, arg: bool, /) -> None: ...

    @property
    def use_cache(self) -> bool:
        """False: recompute the whole text every step"""

    @use_cache.setter
    def use_cache(self, arg: bool, /) -> None: ...

    @property
    def context_shift(self) -> bool:
        """shift a full context instead of stopping"""

    @context_shift.setter
    def context_shift(self, arg: bool, /) -> None: ...

    @property
    def n_keep(self) -> int:
        """tokens a context shift keeps at the start"""

    @n_keep.setter
    def n_keep(self, arg: int, /) -> None: ...

class GenerateResult:
    @property
    def tokens(self) -> list[int]:
        """generated ids (end-of-generation token excluded)"""

    @property
    def logprobs(self) -> Annotated[NDArray[numpy.float32], dict(shape=(None,), writable=False)]:
        """
        float32 [len(tokens)]: log p(token) under the model's raw distribution (a view)
        """

    @property
    def stop_reason(self) -> str:
        """'eos', 'stop string', 'length' or 'context full'"""

    @property
    def n_prompt(self) -> int: ...

    @property
    def prefill_seconds(self) -> float: ...

    @property
    def decode_seconds(self) -> float: ...

    @property
    def n_decoded(self) -> int: ...

    @property
    def n_shifts(self) -> int: ...

def generate(context: Context, prompt: Sequence[int], params: GenerateParams, on_text: Callable[[str], None] | None = None) -> GenerateResult:
    """
    Evaluates prompt, then samples up to params.n_predict tokens, appending all of them to the context. on_text(str) receives complete UTF-8 text as it is produced.
    """

class NeedleCase:
    """A passkey-retrieval case (src/eval/needle.h)"""

    @property
    def key(self) -> str:
        """the five-digit pass key"""

    @property
    def prompt(self) -> str:
        """the text given to the model"""

    @property
    def tokens(self) -> list[int]:
        """its token ids"""

    @property
    def needle_index(self) -> int: ...

    @property
    def n_sentences(self) -> int: ...

def needle_case(model: Model, seed: int, length: int, depth: float = 0.5, trial: int = 0, chat: bool = True) -> NeedleCase:
    """
    The passkey case of `kvforge eval needle` for (seed, length in tokens, depth in [0, 1], trial), in the model's chat template (chat) with the answer started as 'The pass key is'.
    """

def needle_answer_correct(answer: str, key: str) -> bool:
    """Whether an answer contains the key (the needle task's verifier)."""

def set_gates(context: Context, alpha: Annotated[NDArray[numpy.float32], dict(shape=(None, None), order='C', device='cpu', writable=False)], sinks: int, recent: int) -> None:
    """
    Soft gates: every head attends alpha * full + (1 - alpha) * (first `sinks` + last `recent` tokens); alpha float32 [n_layer, n_kv_head] in [0, 1]; needs a full-history cache. From the next eval on.
    """

class TaskCase:
    """A verifiable task case (src/eval/tasks.h)"""

    @property
    def task(self) -> str: ...

    @property
    def expected(self) -> str:
        """the exact answer"""

    @property
    def prompt(self) -> str:
        """the text given to the model"""

    @property
    def tokens(self) -> list[int]:
        """its token ids"""

def task_names() -> list[str]:
    """The generated tasks of `kvforge eval tasks`."""

def default_task_names() -> list[str]:
    """The tasks `kvforge eval tasks` runs by default."""

def task_case(model: Model, task: str, seed: int, length: int, trial: int, chat: bool = True) -> TaskCase:
    """The case of `kvforge eval tasks` for (task, seed, length, trial)."""

def task_answer_correct(answer: str, expected: str, gsm8k: bool = False) -> bool:
    """The tasks' verifier (exact answer; gsm8k: the final number)."""

def read_gsm8k_jsonl(path: str) -> list[tuple[str, str]]:
    """[(question, expected final answer)] of a GSM8K-format JSONL file."""

def question_prompt(model: Model, question: str, chat: bool = True) -> list[int]:
    """
    The tokens of a question as `kvforge eval tasks --jsonl` gives it to the model.
    """

def read_head_gates(path: str) -> Annotated[NDArray[numpy.float64], dict(shape=(None, None))]:
    """
    A gate file (adapter_weights.tsv / full_attention_heads.tsv) as float64 [n_layer, n_kv_head], clipped to [0, 1] as the research code loads it.
    """

def write_head_gates(path: str, alpha: Annotated[NDArray[numpy.float64], dict(shape=(None, None), order='C', device='cpu', writable=False)]) -> None:
    """
    Writes float64 [n_layer, n_kv_head] as np.savetxt(path, alpha, delimiter='\\t').
    """
