"""`kvforge eval tasks` on the real model: the table and JSON, exact answer
extraction as reported, GSM8K-format JSONL, and one clear error for bad
input."""
import json

from conftest import run_kvforge


def test_tasks_table_and_json(kvforge_bin, smollm2_gguf, tmp_path):
    out = tmp_path / "tasks.json"
    r = run_kvforge(kvforge_bin, "eval", "tasks", "-m", smollm2_gguf, "--tasks", "passkey,copy", "--trials", 2,
                    "--lengths", 256, "--json-out", out)
    assert "| task" in r.stdout and "passkey" in r.stdout and "overall:" in r.stdout
    j = json.loads(out.read_text())
    assert j["total"] == 4 and [c["task"] for c in j["cells"]] == ["passkey", "copy"]
    for t in j["trials"]:
        assert t["n_prompt"] <= 256
        assert t["correct"] == (t["extracted"] == t["expected"])
    # The full cache finds the pass key (as eval needle shows at this length).
    assert all(t["correct"] for t in j["trials"] if t["task"] == "passkey"), j["trials"]


def test_gsm8k_jsonl(kvforge_bin, smollm2_gguf, tmp_path):
    data = tmp_path / "gsm8k.jsonl"
    data.write_text('{"question": "What is 2 plus 3?", "answer": "2 + 3 = <<2+3=5>>5\\n#### 5"}\n'
                    '{"question": "What is 10 minus 4?", "answer": "#### 6"}\n')
    out = tmp_path / "j.json"
    r = run_kvforge(kvforge_bin, "eval", "tasks", "-m", smollm2_gguf, "--jsonl", data, "-n", 24, "--json-out", out)
    j = json.loads(out.read_text())
    assert j["total"] == 2 and [t["expected"] for t in j["trials"]] == ["5", "6"]
    for t in j["trials"]:
        assert t["correct"] == (t["extracted"] == t["expected"])
    assert "jsonl" in r.stdout


def test_bad_input_gives_one_error(kvforge_bin, smollm2_gguf, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "no final number"}\n')
    for args, message in [(["--tasks", "sorting"], "unknown task 'sorting'"),
                          (["--jsonl", bad], "line 1: the answer does not end in '#### N'"),
                          (["--jsonl", bad, "--tasks", "copy"], "exclude each other"),
                          (["--kv", "heads:random:1,sparsity:2"], "sparsity must be in [0, 1]")]:
        r = run_kvforge(kvforge_bin, "eval", "tasks", "-m", smollm2_gguf, *args, check=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and lines[-1].startswith("error: ") and message in lines[-1], (args, r.stderr)
