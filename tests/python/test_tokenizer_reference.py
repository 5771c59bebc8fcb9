"""Token ids from `kvforge tokenize` against reference tokenizers.

References:
  * llama.cpp (llama-cpp-python, vocab_only) on the real SmolLM2 GGUF and on
    synthetic GGUF vocabularies written here with gguf-py;
  * Hugging Face: the tokenizer transformers builds from the same GGUF, and
    `tokenizers` BPE models trained here with the matching pre-tokenizer;
  * sentencepiece's own encoder for a SentencePiece BPE model trained here.
"""
import json
import random
import subprocess

import numpy as np
import pytest

from conftest import run_kvforge

# --------------------------------------------------------------------------
# Hard strings.

LONG_PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. It's 3.14159 miles away; don't you think "
    "that's FAR?? In 1999, 12,345,678 people (roughly) visited https://example.com/path?q=1&r=2. "
    "Naïve café owners in Zürich sell crème brûlée for €4.50 — or ¥500 in 東京. "
) * 20

CORPUS = [
    "",
    " ",
    "  ",
    "\n",
    "Hello world",
    "Hello, world!",
    " leading space",
    "trailing space ",
    "   three leading and trailing   ",
    "multiple     spaces   inside",
    "tabs\tand\t\ttabs\t",
    "new\nlines\n\nand\r\nCRLF\r\n",
    " \n \n\t\n  x",
    "1234567",
    "3.14159",
    "x = 1234567890 + 0.5e-10",
    "phone: +1 (555) 010-9999",
    "I'm sure it's what you'll see, they've said they'd go and we're done",
    "I'M SURE IT'S WHAT YOU'LL SEE, THEY'VE SAID",
    "i'M mIxEd'S cAsE'lL 'd 're 'Ve",
    "don't''s '' ' 's",
    "def f(x):\n    return x ** 2  # square\n",
    "int main() { printf(\"%d\\n\", 42); return 0; }",
    "<html><body class=\"a\">&amp;</body></html>",
    "Γειά σου κόσμε",
    "Привет, мир! Ёлка",
    "你好，世界。我爱编程",
    "こんにちは世界、カタカナ",
    "안녕하세요 세계",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "Emoji: 😀😃😄 👍🏽 🇫🇷",
    "Family: 👨‍👩‍👧‍👦 and 🏳️‍🌈 and 👩🏾‍💻",
    "Zero\u200bwidth\u200djoiner\u2060",
    "nbsp\u00a0here\u3000ideographic\u2003em",
    "Ünïcödé ñ ç ß ø å Œ ﬁ ǅ",
    "math: ∑ ∫ √ ∞ ≠ ≤ ² ½ Ⅻ",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "text<|im_end|>more<|endoftext|>",
    "<|im_start|><|im_start|>",
    "almost <|im_start| special <im_end|>",
    "<|im_start|>",
    "\u00e9\u0301 combining e\u0301",
    "....!!!???,,,;;;:::",
    "$100 + 50% = ~^|<=>",
    "control\x06bytes\x00\x01\x7f\x1b[0m",  # 0x06 has no token in SmolLM2: dropped, not <|endoftext|>
    "a" * 300,
    " ".join(["word"] * 50),
    LONG_PARAGRAPH,
]

PLAIN_CORPUS = [s for s in CORPUS if "<" not in s]


def _batch(kvforge_bin, model, texts, tmp_path, *flags):
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in texts), encoding="utf-8")
    # Empty lines are skipped by --batch, so "" is encoded as a JSON string.
    out = run_kvforge(kvforge_bin, "tokenize", "-m", model, "--batch", path, *flags).stdout
    lines = out.splitlines()
    assert len(lines) == len(texts)
    return [json.loads(l) for l in lines]


def _kvforge_ids(kvforge_bin, model, texts, tmp_path, bos=False, special=True):
    flags = ([] if bos else ["--no-bos"]) + ([] if special else ["--no-special"])
    return _batch(kvforge_bin, model, texts, tmp_path, *flags)


def _llama(path):
    import llama_cpp
    return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


def _compare(name, texts, got, want):
    assert len(got) == len(want) == len(texts) and any(want)
    bad = [(t, g, w) for t, g, w in zip(texts, got, want) if g != w]
    assert not bad, f"{name}: {len(bad)} of {len(texts)} differ; first: {bad[0]!r}"


# --------------------------------------------------------------------------
# The real model.

def test_cli_prompt_and_pieces(kvforge_bin, smollm2_gguf):
    out = run_kvforge(kvforge_bin, "tokenize", "-m", smollm2_gguf, "-p", "Hello world<|im_end|>", "--pieces").stdout
    assert json.loads(out) == [[19556, "Hello"], [905, " world"], [2, "<|im_end|>"]]
    out = run_kvforge(kvforge_bin, "tokenize", "-m", smollm2_gguf, "-p", "<|im_end|>", "--no-special").stdout
    assert 2 not in json.loads(out)


def test_cli_rejects_missing_text(kvforge_bin, smollm2_gguf):
    r = run_kvforge(kvforge_bin, "tokenize", "-m", smollm2_gguf, check=False)
    assert r.returncode == 1 and r.stderr.startswith("error:")


@pytest.mark.parametrize("special", [True, False])
def test_smollm2_matches_llama_cpp(kvforge_bin, smollm2_gguf, tmp_path, special):
    llm = _llama(smollm2_gguf)
    got = _kvforge_ids(kvforge_bin, smollm2_gguf, CORPUS, tmp_path, bos=True, special=special)
    want = [llm.tokenize(t.encode(), add_bos=True, special=special) for t in CORPUS]
    _compare("llama.cpp", CORPUS, got, want)


@pytest.fixture(scope="module")
def smollm2_hf(smollm2_gguf):
    import transformers
    return transformers.AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)


def test_smollm2_matches_hf_where_faithful(kvforge_bin, smollm2_gguf, smollm2_hf, tmp_path):
    # transformers rebuilds the GGUF vocabulary with a plain ByteLevel
    # pre-tokenizer and drops SmolLM's individual-digit split (tokenizer.ggml.pre
    # = smollm; the original tokenizer.json has Digits(individual_digits) first).
    # That matters where a digit (any \p{N}: "²", "½", "Ⅻ"...) follows a space
    # or a letter that a merge could join it to. So: (1) with the original
    # pre-tokenizer restored, HF must agree on every string; (2) the converted
    # tokenizer as transformers gives it must agree wherever the restored one
    # agrees with it. Special tokens are added tokens in HF (always parsed),
    # so compare with special=True.
    from tokenizers import Tokenizer, pre_tokenizers as pt
    fixed = Tokenizer.from_str(smollm2_hf.backend_tokenizer.to_str())
    fixed.pre_tokenizer = pt.Sequence([pt.Digits(individual_digits=True),
                                       pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    got = _kvforge_ids(kvforge_bin, smollm2_gguf, CORPUS, tmp_path, special=True)
    want_fixed = [fixed.encode(t, add_special_tokens=False).ids for t in CORPUS]
    _compare("HF GGUF tokenizer + smollm pre-tokenizer", CORPUS, got, want_fixed)

    want_raw = [smollm2_hf.encode(t, add_special_tokens=False) for t in CORPUS]
    faithful = [i for i in range(len(CORPUS)) if want_raw[i] == want_fixed[i]]
    assert len(faithful) >= len(CORPUS) - 3  # only the strings with non-ASCII numbers differ
    _compare("HF GGUF tokenizer (faithful strings)", [CORPUS[i] for i in faithful],
             [got[i] for i in faithful], [want_raw[i] for i in faithful])


def test_smollm2_long_text_speed(kvforge_bin, smollm2_gguf, tmp_path):
    import time
    rng = random.Random(0)
    words = LONG_PARAGRAPH.split() + CORPUS[20:40]
    text = " ".join(rng.choice(words) for _ in range(200_000))[: 1 << 20]
    f = tmp_path / "big.txt"
    f.write_text(text, encoding="utf-8")
    t0 = time.time()
    out = run_kvforge(kvforge_bin, "tokenize", "-m", smollm2_gguf, "-f", f).stdout
    elapsed = time.time() - t0
    assert len(json.loads(out)) > 100_000
    assert elapsed < 10, f"1 MB took {elapsed:.1f}s"


# --------------------------------------------------------------------------
# Synthetic byte-level BPE vocabularies.

LETTERS = "abcdefghijklmnopqrstuvwxyz"
UNICODE_WORDS = ["café", "naïve", "Zürich", "κόσμε", "мир", "世界", "東京", "こんにちは", "😀", "👍🏽", "ß", "Œuvre"]


def _training_text(seed=1, n=4000):
    rng = random.Random(seed)
    lex = ["the", "and", "of", "to", "in", "is", "it", "that", "for", "you", "The", "THE", "hello", "world",
           "token", "tokenizer", "return", "def", "print", "x", "y"] + UNICODE_WORDS
    lines = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(3, 15)):
            r = rng.random()
            if r < 0.6:
                parts.append(rng.choice(lex) + rng.choice(["", "", "'s", "'ll", "'T", ",", ".", "!"]))
            elif r < 0.75:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 7))))
            elif r < 0.85:
                parts.append("".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 8))))
            else:
                parts.append(rng.choice(["(", ")", "{", "}", "==", "+=", "->", "//", "#", "'", '"']))
        sep = rng.choice([" ", " ", " ", "  ", "\t", "\n"])
        lines.append(sep.join(parts))
    return "\n".join(lines)


LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
            r"\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _hf_pre_tokenizer(pre):
    from tokenizers import Regex, pre_tokenizers as pt
    if pre == "gpt-2":
        return pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        return pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    regex = {"llama-bpe": LLAMA3_RE, "qwen2": QWEN2_RE}[pre]
    return pt.Sequence([pt.Split(Regex(regex), behavior="isolated", invert=False),
                        pt.ByteLevel(add_prefix_space=False, use_regex=False)])


def _train_byte_bpe(pre):
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, trainers
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = _hf_pre_tokenizer(pre)
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_training_text().splitlines(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab, merges = model["vocab"], [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    # The reference: same vocabulary and merges, Llama 3's BPE ignores merges
    # for words that are whole tokens.
    ref = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=(pre == "llama-bpe")))
    ref.pre_tokenizer = _hf_pre_tokenizer(pre)
    ref.decoder = decoders.ByteLevel()
    ref.add_special_tokens(SPECIALS)
    return ref, vocab, merges


def _add_llama_hparams(w):
    # llama.cpp reads the architecture's hyper-parameters even with vocab_only.
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_rope_dimension_count(16)
    w.add_layer_norm_rms_eps(1e-5)


def _write_gguf(path, fill):
    import gguf
    w = gguf.GGUFWriter(str(path), "llama")
    _add_llama_hparams(w)
    fill(w, gguf)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _byte_bpe_gguf(path, pre, vocab, merges, add_bos):
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert [vocab[t] for t in tokens] == list(range(len(tokens)))

    def fill(w, gguf):
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens])
        w.add_token_merges([f"{a} {b}" for a, b in merges])
        w.add_bos_token_id(vocab["<|endoftext|>"])
        w.add_eos_token_id(vocab["<|im_end|>"])
        w.add_add_bos_token(add_bos)
    return _write_gguf(path, fill)


@pytest.mark.parametrize("pre", ["gpt-2", "smollm", "llama-bpe", "qwen2"])
def test_synthetic_byte_bpe(kvforge_bin, tmp_path, pre):
    ref, vocab, merges = _train_byte_bpe(pre)
    add_bos = pre == "llama-bpe"
    model = _byte_bpe_gguf(tmp_path / f"{pre}.gguf", pre, vocab, merges, add_bos)
    bos = [vocab["<|endoftext|>"]] if add_bos else []

    got = _kvforge_ids(kvforge_bin, model, CORPUS, tmp_path, bos=True, special=True)
    want_hf = [bos + ref.encode(t, add_special_tokens=False).ids for t in CORPUS]
    _compare(f"HF tokenizers ({pre})", CORPUS, got, want_hf)

    import llama_cpp
    llm = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    want_llama = [llm.tokenize(t.encode(), add_bos=True, special=True) for t in CORPUS]
    _compare(f"llama.cpp ({pre})", CORPUS, got, want_llama)


def test_synthetic_unknown_pre_is_an_error(kvforge_bin, tmp_path):
    _, vocab, merges = _train_byte_bpe("gpt-2")
    model = _byte_bpe_gguf(tmp_path / "bad.gguf", "no-such-pre", vocab, merges, False)
    r = run_kvforge(kvforge_bin, "tokenize", "-m", model, "-p", "x", check=False)
    assert r.returncode == 1 and "no-such-pre" in r.stderr


# --------------------------------------------------------------------------
# SentencePiece BPE ("llama" vocabulary).

@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    import sentencepiece as spm
    import io
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_training_text(seed=2, n=3000).splitlines()), model_writer=buf,
        vocab_size=1000, model_type="bpe", byte_fallback=True, character_coverage=0.995,
        # Keep the text as it is (no NFKC, no whitespace squeezing): the GGUF
        # "llama" tokenizer has no normalizer, only the dummy-prefix space.
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())

    def fill(w, gguf):
        types = []
        for i in range(sp.get_piece_size()):
            t = gguf.TokenType.NORMAL
            if sp.is_unknown(i): t = gguf.TokenType.UNKNOWN
            elif sp.is_control(i): t = gguf.TokenType.CONTROL
            elif sp.is_byte(i): t = gguf.TokenType.BYTE
            elif sp.is_unused(i): t = gguf.TokenType.UNUSED
            types.append(t)
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list([sp.id_to_piece(i) for i in range(sp.get_piece_size())])
        w.add_token_scores([sp.get_score(i) for i in range(sp.get_piece_size())])
        w.add_token_types(types)
        w.add_bos_token_id(sp.bos_id())
        w.add_eos_token_id(sp.eos_id())
        w.add_unk_token_id(sp.unk_id())
        w.add_add_bos_token(True)
        w.add_add_space_prefix(True)
    path = _write_gguf(tmp_path_factory.mktemp("spm") / "spm.gguf", fill)
    return sp, path


def test_spm_matches_sentencepiece(kvforge_bin, spm_model, tmp_path):
    sp, model = spm_model
    got = _kvforge_ids(kvforge_bin, model, PLAIN_CORPUS, tmp_path, bos=True, special=True)
    want = [[sp.bos_id()] + sp.encode(t) for t in PLAIN_CORPUS]
    _compare("sentencepiece", PLAIN_CORPUS, got, want)


def test_spm_matches_llama_cpp(kvforge_bin, spm_model, tmp_path):
    sp, model = spm_model
    llm = _llama(model)
    got = _kvforge_ids(kvforge_bin, model, CORPUS, tmp_path, bos=True, special=True)
    want = [llm.tokenize(t.encode(), add_bos=True, special=True) for t in CORPUS]
    _compare("llama.cpp (spm)", CORPUS, got, want)


# --------------------------------------------------------------------------
# Chat template of the real model, rendered by Jinja.

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke\nwith two lines."}],
]


@pytest.mark.parametrize("gen", [True, False])
@pytest.mark.parametrize("conv", range(len(CONVERSATIONS)))
def test_chat_template_matches_jinja(kvforge_bin, smollm2_gguf, conv, gen):
    import jinja2
    import gguf
    reader = gguf.GGUFReader(str(smollm2_gguf))
    field = reader.fields["tokenizer.chat_template"]
    template = bytes(field.parts[field.data[0]]).decode("utf-8")
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as HF renders templates
    messages = CONVERSATIONS[conv]
    want = env.from_string(template).render(messages=messages, add_generation_prompt=gen)
    args = ["chat-template", "-m", smollm2_gguf, "--messages", json.dumps(messages)]
    if not gen:
        args.append("--no-generation-prompt")
    got = run_kvforge(kvforge_bin, *args).stdout
    assert got == want


# --------------------------------------------------------------------------
# Random strings: many scripts, whitespace kinds, digits, markers.

def _random_strings(n, seed):
    rng = random.Random(seed)
    pools = [
        "abcXYZ'sltdmvre", "0123456789", " \t\n\r\u000b\u000c\u0085\u00a0\u2000\u2028\u3000",
        "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~", "éüßñøÆŒǅΩжЖ", "中文日本語한국어", "²½Ⅻ٣४", "😀👍🏽\u200d❤️🇫🇷",
        "\u0301\u0308\u200b\u2060\ufeff", "अआक्षमिلامעברית",
    ]
    markers = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_", "<|"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 25)):
            if rng.random() < 0.05:
                parts.append(rng.choice(markers))
            else:
                pool = rng.choice(pools)
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
        out.append("".join(parts))
    return out


def test_smollm2_random_strings_match_llama_cpp(kvforge_bin, smollm2_gguf, tmp_path):
    llm = _llama(smollm2_gguf)
    texts = _random_strings(400, seed=11)
    for special in (True, False):
        got = _kvforge_ids(kvforge_bin, smollm2_gguf, texts, tmp_path, special=special)
        want = [llm.tokenize(t.encode(), add_bos=False, special=special) for t in texts]
        _compare(f"llama.cpp random (special={special})", texts, got, want)


@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2"])
def test_synthetic_random_strings(kvforge_bin, tmp_path, pre):
    ref, vocab, merges = _train_byte_bpe(pre)
    model = _byte_bpe_gguf(tmp_path / f"{pre}.gguf", pre, vocab, merges, False)
    texts = _random_strings(300, seed=5)
    got = _kvforge_ids(kvforge_bin, model, texts, tmp_path, special=True)
    _compare(f"HF tokenizers random ({pre})", texts, got, [ref.encode(t, add_special_tokens=False).ids for t in texts])
    llm = _llama(model)
    _compare(f"llama.cpp random ({pre})", texts, got, [llm.tokenize(t.encode(), add_bos=False, special=True) for t in texts])


def test_spm_random_strings(kvforge_bin, spm_model, tmp_path):
    sp, model = spm_model
    texts = [t for t in _random_strings(300, seed=9) if "<" not in t]
    got = _kvforge_ids(kvforge_bin, model, texts, tmp_path, special=False)
    _compare("sentencepiece random", texts, got, [sp.encode(t) for t in texts])
    llm = _llama(model)
    _compare("llama.cpp random (spm)", texts, got, [llm.tokenize(t.encode(), add_bos=False, special=False) for t in texts])
