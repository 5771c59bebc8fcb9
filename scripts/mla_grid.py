#!/usr/bin/env python3
"""The convert-mla results grid of README (### convert-mla), reproducible.

For each latent size D (MHA2MLA's operating points: --rope-dims 8 and
D = 168 / 96 / 48 / 24 on SmolLM2-135M, i.e. -50 / -68.75 / -81.25 / -87.5 %
KV) and each --method, converts the model once, then measures every KV
storage on it: bytes per token, perplexity on the pinned text (-c 512
--chunks 8 and -c 2048 --chunks 2) and needle accuracy (512 tokens: 3 trials
x 3 depths; 2048: 2 x 3). The original model is measured the same way.

Measured one column at a time (all perplexities at 512 first, ...). Every
measurement is stored in OUT/results.json as soon as it is done, and a rerun
skips what is there, so the grid can be stopped and resumed (or grown:
another --storage later). Prints the README table (markdown) at the end.

    scripts/mla_grid.py [-m GGUF] [--kvforge build/kvforge] [--out DIR]
                        [--kv-dims 168,96,48,24] [--rope-dims 8]
                        [--methods svd,activation] [--storage f16,q8] [--no-original] [-t T]
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def default_model():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return str(pathlib.Path(base) / "kvforge" / "SmolLM2-135M-Instruct.Q4_1.gguf")


def run(cmd):
    print("+", " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)


# (name, command arguments after `kvforge`, how to read the JSON)
def measurements(threads):
    t = ["-t", threads] if threads else []
    return [
        ("ppl512", ["perplexity", "-c", 512, "--chunks", 8, *t], lambda j: (j["ppl"], j["kv_bytes_per_token"])),
        ("ppl2048", ["perplexity", "-c", 2048, "--chunks", 2, *t], lambda j: (j["ppl"], j["kv_bytes_per_token"])),
        ("needle512", ["eval", "needle", "--lengths", 512, "--trials", 3, *t],
         lambda j: (f'{j["correct"]}/{j["total"]}', None)),
        ("needle2048", ["eval", "needle", "--lengths", 2048, "--trials", 2, *t],
         lambda j: (f'{j["correct"]}/{j["total"]}', None)),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=default_model())
    ap.add_argument("--kvforge", default=str(REPO / "build" / "kvforge"))
    ap.add_argument("--out", default="mla-grid")
    ap.add_argument("--kv-dims", default="168,96,48,24")
    ap.add_argument("--rope-dims", type=int, default=8)
    ap.add_argument("--methods", default="svd,activation")
    ap.add_argument("--storage", default="f16,q8")
    ap.add_argument("--no-original", action="store_true", help="skip the unconverted model's row")
    ap.add_argument("-t", "--threads", type=int, default=0)
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    storages = a.storage.split(",")

    def measure(row, model, storage, name, args, read):
        cell = res.setdefault(row, {})
        if name in cell:
            return
        j = out / "last.json"
        run([a.kvforge, *args, "-m", model, "--kv", storage, "--json-out", j])
        value, bpt = read(json.loads(j.read_text()))
        cell[name] = value
        if bpt is not None:
            cell["bytes_per_token"] = bpt
        res_path.write_text(json.dumps(res, indent=1))

    rows = []
    if not a.no_original:
        for s in storages:
            rows.append((f"original {s}", a.model, s))
    for method in a.methods.split(","):
        for d in (int(x) for x in a.kv_dims.split(",")):
            conv = out / f"smol-mla-{method}-{d}.gguf"
            if not conv.exists():
                run([a.kvforge, "convert-mla", "-m", a.model, "-o", conv, "--kv-dim", d, "--rope-dims", a.rope_dims,
                     "--method", method])
            for s in storages:
                rows.append((f"{method} D={d} {s}", conv, s))
    n_orig = 0 if a.no_original else len(storages)
    # One column at a time (the cheap ones first), the known original last.
    for m in measurements(a.threads):
        for row, model, s in rows[n_orig:] + rows[:n_orig]:
            measure(row, model, s, *m)

    base = res.get("original f16", {})
    print("| model | KV | B/token | ppl `-c 512` | ppl `-c 2048` | needle 512 | needle 2048 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row, _, s in rows:
        c = res[row]

        def ppl(k):
            if k not in c:
                return "—"
            r = f" ({c[k] / base[k]:.1f}×)" if k in base and not row.startswith("original") else ""
            return f"{c[k]:,.1f}{r}"

        name = row.rsplit(" ", 1)[0]
        print(f'| {name} | {s} | {c.get("bytes_per_token", 0):,} | {ppl("ppl512")} | {ppl("ppl2048")} '
              f'| {c.get("needle512", "—")} | {c.get("needle2048", "—")} |')


if __name__ == "__main__":
    main()
