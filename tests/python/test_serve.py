"""`kvforge serve` through the official `openai` client, on the default model:
chat and completions (streamed and not), log-probs, stop strings, seeds, n>1;
greedy tokens of concurrent requests equal those of each request alone and
of `kvforge run` (batching and prefix sharing never change an answer);
prefix blocks reused and copied on write; a disconnected client's blocks
freed; the queue limit (429 + Retry-After); the API key; malformed requests
answered with OpenAI-style 4xx errors while the server keeps serving.

Every server listens on 127.0.0.1 on a free port; every wait is bounded."""
import concurrent.futures
import json
import re
import socket
import subprocess
import time

import httpx
import openai
import pytest

from conftest import run_kvforge

STARTUP_S = 60
N_CTX = 1024


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, kvforge_bin, model, *extra):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(kvforge_bin), "serve", "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
             "-c", str(N_CTX), "-t", "2", *map(str, extra)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read()
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        pytest.fail("kvforge serve did not come up")

    def client(self, key="none", **kw):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=120, **kw)

    def metrics(self, key=None):
        h = {"Authorization": f"Bearer {key}"} if key else {}
        text = httpx.get(self.url + "/metrics", headers=h, timeout=10).text
        return {m.group(1): float(m.group(2)) for m in re.finditer(r"^kvforge_(\w+) (\S+)$", text, re.M)}

    def wait_idle(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.metrics()
            if m["running_sequences"] == 0 and m["kv_blocks_used"] == 0 and m["queue_depth"] == 0:
                return m
            time.sleep(0.05)
        pytest.fail(f"server still busy: {m}")

    def stop(self):
        self.proc.terminate()  # SIGTERM: graceful shutdown
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("kvforge serve did not shut down on SIGTERM")
        return rc


@pytest.fixture(scope="module")
def server(kvforge_bin, smollm2_gguf):
    s = Server(kvforge_bin, smollm2_gguf, "--parallel", 8, "--queue", 32)
    yield s
    assert s.stop() == 0, s.proc.stderr.read()


PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,",
           "The three primary colors are", "Water boils at", "My favourite book is",
           "The quick brown fox", "In 1969, the first humans", "A KV cache stores", "import numpy as np\n"]


def greedy(client, prompt, n=24, ignore_eos=False, **kw):
    r = client.completions.create(model="m", prompt=prompt, max_tokens=n, temperature=0,
                                  extra_body={"ignore_eos": ignore_eos}, **kw)
    return r.choices[0].text


def test_models_health_metrics_page(server):
    models = server.client().models.list()
    assert len(models.data) == 1 and models.data[0].object == "model"
    m = server.metrics()
    assert m["kv_blocks_total"] == 8 * (N_CTX // 256 + 1)
    assert m["kv_blocks_used"] == 0
    page = httpx.get(server.url + "/", timeout=10)
    assert page.status_code == 200 and "/v1/chat/completions" in httpx.get(server.url + "/web/chat.js").text


def test_chat_streamed_equals_whole(server):
    c = server.client()
    msgs = [{"role": "user", "content": "Name three fruits."}]
    whole = c.chat.completions.create(model="m", messages=msgs, max_tokens=20, temperature=0)
    text = whole.choices[0].message.content
    assert text and whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage.completion_tokens <= 20 and whole.usage.prompt_tokens > 5
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    chunks = list(c.chat.completions.create(model="m", messages=msgs, max_tokens=20, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == whole.choices[0].finish_reason


def test_completions_match_kvforge_run(server, kvforge_bin, smollm2_gguf):
    """The server's greedy text equals the single-sequence CLI's."""
    for prompt in PROMPTS[:2]:
        cli = run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, "-p", prompt, "--temp", "0", "-n", "24",
                          "--ignore-eos", "-c", N_CTX, "-t", "2").stdout
        assert greedy(server.client(), prompt, ignore_eos=True) + "\n" == cli


def test_logprobs(server):
    c = server.client()
    r = c.completions.create(model="m", prompt=PROMPTS[0], max_tokens=6, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    for tok, l, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert len(top) == 3 and l <= 0
        assert max(top.values()) == pytest.approx(l, abs=1e-6)  # greedy picks the most likely token
    assert "".join(lp.tokens) == r.choices[0].text
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                  temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert 1 <= len(content) <= 4 and all(len(t.top_logprobs) == 2 for t in content)


def test_logprobs_follow_temperature(server):
    """Log-probs are those of the distribution sampled from: log-softmax of
    logits / T (greedy reports T = 1). The first token's logits do not depend
    on sampling, so its alternatives at T = 0.5 are those at T = 1, with log-prob
    gaps twice as wide (float32 logits: 1e-4 absolute)."""
    c = server.client()

    def first(temperature):
        r = c.completions.create(model="m", prompt=PROMPTS[1], max_tokens=1, temperature=temperature, seed=3,
                                 logprobs=5, extra_body={"ignore_eos": True})
        lp = r.choices[0].logprobs
        return lp.tokens[0], lp.token_logprobs[0], lp.top_logprobs[0]

    _, _, raw = first(0)
    assert first(1.0)[2] == pytest.approx(raw, abs=1e-6)
    tok, tok_lp, hot = first(0.5)
    assert hot.keys() == raw.keys()  # dividing by T keeps the ranking
    best = max(raw, key=raw.get)
    for t in raw:
        assert hot[t] - hot[best] == pytest.approx(2 * (raw[t] - raw[best]), abs=1e-4)
    assert hot[best] > raw[best]  # sharper: the favourite gains
    if tok in hot:
        assert tok_lp == pytest.approx(hot[tok], abs=1e-6)


def test_stop_strings(server):
    c = server.client()
    full = greedy(c, PROMPTS[2], 32, ignore_eos=True)
    words = full.split()
    assert len(words) > 4, full
    stop = " " + words[3]
    cut = greedy(c, PROMPTS[2], 32, ignore_eos=True, stop=[stop, "@@never@@"])
    assert cut == full[:full.index(stop)]


def test_seeds_reproduce_and_n(server):
    c = server.client()
    kw = dict(model="m", prompt=PROMPTS[5], max_tokens=16, temperature=1.0, top_p=0.95, extra_body={"ignore_eos": True})
    a = c.completions.create(seed=7, n=3, **kw)
    b = c.completions.create(seed=7, n=3, **kw)
    assert len(a.choices) == 3 and [ch.index for ch in a.choices] == [0, 1, 2]
    assert [ch.text for ch in a.choices] == [ch.text for ch in b.choices]
    assert len({ch.text for ch in a.choices}) > 1  # each choice draws its own stream
    assert a.usage.completion_tokens == 3 * 16


def test_batched_equals_solo(server):
    """10 concurrent greedy requests (8 run, 2 queue) give each one's solo tokens."""
    c = server.client()
    solo = [greedy(c, p, ignore_eos=True) for p in PROMPTS]
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as ex:
        batched = list(ex.map(lambda p: greedy(c, p, ignore_eos=True), PROMPTS))
    assert batched == solo
    server.wait_idle()


def test_prefix_sharing_and_copy_on_write(server, kvforge_bin, smollm2_gguf):
    c = server.client()
    system = "You are a careful assistant. " + " ".join(f"Rule {i}: answer briefly and truthfully." for i in range(40))
    before = server.metrics()
    prompts = [system + "\nQ: What is 2+2?\nA:", system + "\nQ: Name a color.\nA:"]
    texts = []
    for p in prompts:
        r = c.completions.create(model="m", prompt=p, max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
        texts.append(r.choices[0].text)
    # The second prompt reuses the first one's blocks up to where they
    # diverge, mid-block: its partial block is copied before it writes.
    assert r.usage.prompt_tokens > 300
    assert r.usage.prompt_tokens_details.cached_tokens >= 256
    after = server.wait_idle()
    assert after["prefix_cache_tokens_total"] - before["prefix_cache_tokens_total"] >= 256
    assert after["kv_copy_on_write_total"] > before["kv_copy_on_write_total"]
    assert after["kv_blocks_cached"] > 0
    # And the answer is what a cold single-sequence run gives.
    cli = run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, "-p", prompts[1], "--temp", "0", "-n", "8",
                      "--ignore-eos", "-c", N_CTX, "-t", "2").stdout
    assert texts[1] + "\n" == cli


def test_disconnect_frees_blocks(server):
    with httpx.Client(timeout=30) as h:
        with h.stream("POST", server.url + "/v1/completions",
                      json={"prompt": PROMPTS[3], "max_tokens": 900, "stream": True, "ignore_eos": True}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()  # leaving this iterator early closes the connection
            assert sum(next(lines).startswith("data: ") for _ in range(6)) == 3
            assert server.metrics()["running_sequences"] == 1
            lines.close()  # the client goes away mid-stream
            m = server.wait_idle()
    assert m["completion_tokens_total"] > 0
    # A non-streamed request writes nothing until it is done; its client
    # timing out and closing the connection cancels it all the same.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/completions", timeout=httpx.Timeout(30, read=1.0),
                   json={"prompt": PROMPTS[3], "max_tokens": 900, "ignore_eos": True})
    server.wait_idle()


def test_load_64_clients(server):
    """64 concurrent clients at once (8 run, 32 queue, the rest get 429 and
    retry after Retry-After): streamed and whole, greedy and seeded
    sampling, every 8th hanging up after its first token. Only 200, or 429/503
    with Retry-After, ever come back; every finished answer equals the same
    request's answer alone; afterwards no block is held. Bounded: 6 tokens
    each, at most 8 tries per client, a 60 s deadline."""
    prompts = PROMPTS[:4]
    options = [dict(temperature=0), dict(temperature=0.8, top_p=0.9, seed=11)]
    base = dict(max_tokens=6, ignore_eos=True)

    def ask(h, prompt, opt, stream, hang_up=False):
        """(status, text or None, Retry-After) of one request."""
        body = dict(prompt=prompt, stream=stream, **base, **opt)
        if not stream:
            r = h.post(server.url + "/v1/completions", json=body)
            return r.status_code, r.json()["choices"][0]["text"] if r.status_code == 200 else None, \
                r.headers.get("Retry-After")
        with h.stream("POST", server.url + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                r.read()
                return r.status_code, None, r.headers.get("Retry-After")
            text = ""
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                assert "error" not in event, event
                text += event["choices"][0]["text"]
                if hang_up:
                    return 200, None, None  # leaving the block closes the connection
            return 200, text, None

    with httpx.Client(timeout=30) as h:
        solo = {(p, i): ask(h, p, o, False)[1] for p in prompts for i, o in enumerate(options)}
    before = server.metrics()
    deadline = time.monotonic() + 60

    def client(k):
        p, i = prompts[k % len(prompts)], (k // len(prompts)) % len(options)
        statuses = []
        with httpx.Client(timeout=30) as h:
            for _ in range(8):
                status, text, retry_after = ask(h, p, options[i], stream=k % 2 == 0, hang_up=k % 8 == 7)
                statuses.append(status)
                if status == 200:
                    return statuses, (p, i), text
                assert status in (429, 503) and retry_after is not None, (status, retry_after)
                assert time.monotonic() < deadline
                time.sleep(min(float(retry_after), 1.0) * (0.5 + (k % 5) / 10))
        pytest.fail(f"client {k} never got through: {statuses}")

    with concurrent.futures.ThreadPoolExecutor(64) as ex:
        results = list(ex.map(client, range(64)))
    for k, (statuses, key, text) in enumerate(results):
        if k % 8 != 7:
            assert text == solo[key], (k, key)
    refused = sum(s.count(429) for s, _, _ in results)
    after = server.wait_idle()
    assert after["requests_rejected_total"] - before["requests_rejected_total"] == refused
    assert after["kv_blocks_used"] == 0 and after["running_sequences"] == 0


def _post(url, body, **kw):
    return httpx.post(url + "/v1/chat/completions", content=body, timeout=30,
                      headers={"Content-Type": "application/json", **kw.pop("headers", {})}, **kw)


@pytest.mark.parametrize("body,param", [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b'{"messages": "hi"}', "messages"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}', "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}', "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "n": 0}', "n"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "stop": [1]}', "stop"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "5"}', "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 7}', "temperature"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "bogus_field": 1}', "bogus_field"),
    (b'{"messages": [{"role": "wizard", "content": "hi"}]}', "messages[0].role"),
    (b'{"messages": [{"role": "user", "content": "\xff\xfe bad utf-8"}]}', None),
    (json.dumps({"messages": [{"role": "user", "content": "word " * 1500}]}).encode(), "messages"),
])
def test_malformed_requests_get_4xx(server, body, param):
    r = _post(server.url, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    if param:
        assert err["param"] == param
    assert greedy(server.client(), "Hello", 2)  # still serving


def test_unknown_endpoint_404(server):
    r = httpx.get(server.url + "/v1/nothing", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_queue_limit_and_api_key(kvforge_bin, smollm2_gguf):
    s = Server(kvforge_bin, smollm2_gguf, "--parallel", 1, "--queue", 1, "--api-key", "s3cret")
    try:
        with pytest.raises(openai.AuthenticationError):
            s.client("wrong").models.list()
        assert httpx.get(s.url + "/metrics", timeout=10).status_code == 401
        assert httpx.get(s.url + "/health", timeout=10).status_code == 200
        c = s.client("s3cret")
        assert c.models.list().data
        # One running, one queued, the third refused.
        body = {"prompt": PROMPTS[6], "max_tokens": 400, "stream": True, "ignore_eos": True}
        hdr = {"Authorization": "Bearer s3cret"}
        with httpx.Client(timeout=30) as h:
            with h.stream("POST", s.url + "/v1/completions", json=body, headers=hdr) as r1, \
                    h.stream("POST", s.url + "/v1/completions", json=body, headers=hdr) as r2:
                assert r1.status_code == 200 and r2.status_code == 200
                deadline = time.monotonic() + 10
                while s.metrics("s3cret")["queue_depth"] < 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                with pytest.raises(openai.RateLimitError) as e:
                    c.completions.create(model="m", prompt="x", max_tokens=2)
                assert e.value.response.headers["Retry-After"] == "1"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and s.metrics("s3cret")["running_sequences"] > 0:
            time.sleep(0.05)
        assert s.metrics("s3cret")["requests_rejected_total"] == 1
        assert c.completions.create(model="m", prompt="x", max_tokens=2).choices[0].text is not None
        # A non-streamed request answers only when generation ends, so the
        # status tells how it ended: here SIGTERM cut it short (503).
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            pending = ex.submit(httpx.post, s.url + "/v1/completions", headers=hdr, timeout=30,
                                json={"prompt": PROMPTS[6], "max_tokens": 400, "ignore_eos": True})
            deadline = time.monotonic() + 10
            while s.metrics("s3cret")["running_sequences"] < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert s.stop() == 0
            r = pending.result(timeout=30)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
        assert r.json()["error"]["message"] == "the server is shutting down"
    finally:
        if s.proc.poll() is None:
            assert s.stop() == 0


def test_token_eviction_refused(kvforge_bin, smollm2_gguf):
    """Token eviction (h2o, snapkv) is single-sequence: serve refuses it at
    start with one clear error line and exit status 1."""
    r = subprocess.run([str(kvforge_bin), "serve", "-m", str(smollm2_gguf), "--port", "0", "-c", "256",
                        "--kv", "h2o:64"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == (
        "error: the multi-sequence (paged) cache keeps whole histories or windows; token eviction (h2o, snapkv) is "
        "single-sequence")


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def test_chat_page_streams_in_chromium(kvforge_bin, smollm2_gguf):
    """The chat page in headless Chromium (Debian's chromium + chromium-driver,
    driven by Selenium): a message gets a reply that arrives in several
    pieces while it streams, and the cache's fill shown on the page follows
    the server's /metrics (a finished chat leaves its prefix cached)."""
    import os
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.access(path, os.X_OK), f"{path} is missing: scripts/setup_test.sh installs chromium and chromium-driver"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"):
        opts.add_argument(a)
    s = Server(kvforge_bin, smollm2_gguf, "--parallel", 1)
    driver = None
    try:
        driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
        driver.set_script_timeout(10)
        driver.get(s.url + "/")
        wait = WebDriverWait(driver, 30, poll_frequency=0.05)
        total = int(s.metrics()["kv_blocks_total"])
        kv = driver.find_element(By.ID, "kv")
        wait.until(lambda d: f"0 of {total} blocks in use, 0 cached prefixes" in kv.text)
        # Every change of the reply's text, with its time, recorded by the page itself.
        driver.execute_script("""
            window.seen = [];
            new MutationObserver(() => {
              const r = document.querySelectorAll('.assistant');
              if (r.length) window.seen.push([performance.now(), r[r.length - 1].textContent.length]);
            }).observe(document.getElementById('log'), {childList: true, subtree: true, characterData: true});""")
        n = driver.find_element(By.ID, "max-tokens")
        n.clear()
        n.send_keys("12")
        driver.find_element(By.ID, "input").send_keys("Name three fruits.")
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant"))
        send = driver.find_element(By.ID, "send")
        wait.until(lambda d: send.is_enabled() and d.find_element(By.CSS_SELECTOR, ".msg.assistant").text)
        assert not driver.find_elements(By.CSS_SELECTOR, ".msg.error")
        reply = driver.find_element(By.CSS_SELECTOR, ".msg.assistant").text
        seen = driver.execute_script("return window.seen")
        lengths = [l for _, l in seen if l > 0]
        assert len(set(lengths)) >= 2 and lengths == sorted(lengths), seen  # grew piece by piece
        assert seen[-1][0] > min(t for t, l in seen if l > 0), seen
        assert reply.strip()
        # The page polls /metrics every second: the chat's blocks are now a cached prefix.
        cached = int(s.metrics()["kv_blocks_cached"])
        assert cached >= 1
        wait.until(lambda d: f"0 of {total} blocks in use, {cached} cached prefixes" in kv.text)
        assert "MiB" in kv.text and "tok/s" in kv.text
    finally:
        if driver:
            driver.quit()
        assert s.stop() == 0
