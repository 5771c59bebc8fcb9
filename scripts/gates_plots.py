#!/usr/bin/env python3
"""Figures and tables of learned gates (needs numpy and gnuplot):

  gates_plots.py curve RUN_DIR... -o curve.png
      the training curve of `kvforge heads train` runs (their train_log.jsonl
      and alpha_history.npy): RLKV's reward per step and its moving mean,
      Duo's MSE, and for every run the L1 of alpha (mean alpha), the
      sparsity of alpha (share of gates below 0.5) and its spread (sd).
  gates_plots.py merge EVAL.json... -o DIR
      rows of several `kvforge heads eval` runs over the same cases (same
      tasks, lengths, trials, seed), e.g. the baselines and the gate files
      measured apart, as one file DIR/heads-eval.md (an overview: mean
      accuracy per sparsity and method; then every row with its tasks) and
      one figure DIR/heads-eval.png (mean accuracy vs sparsity, random with
      its sd).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np


def gnuplot(script: str) -> None:
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def curve(runs, png):
    data, plots_top, plots_bottom = [], [], []
    for run in runs:
        name = os.path.basename(os.path.normpath(run))
        log = [json.loads(line) for line in open(os.path.join(run, "train_log.jsonl"))]
        hist = np.load(os.path.join(run, "alpha_history.npy"))  # [steps + 1][n_layer][n_kv_head]
        path = png + f".{name}.dat"
        with open(path, "w") as f:
            f.write("# step mean_alpha sparsity reward reward_mean8 mse sd_alpha\n")
            rewards = [row.get("reward", float("nan")) for row in log]
            for s in range(hist.shape[0]):
                g = hist[s]
                r = rewards[s - 1] if s else float("nan")
                rm = float(np.mean(rewards[max(0, s - 8):s])) if s else float("nan")
                mse = log[s - 1].get("mse", float("nan")) if s else float("nan")
                f.write(f"{s} {g.mean():.6f} {np.mean(g < 0.5):.6f} {r} {rm} {mse} {g.std():.6f}\n")
        data.append(path)
        plots_bottom.append(f"'{path}' using 1:2 with lines lw 2 title '{name}: mean alpha (L1)'")
        plots_bottom.append(f"'{path}' using 1:3 with lines dt 2 lw 2 title '{name}: sparsity (alpha < 0.5)'")
        plots_bottom.append(f"'{path}' using 1:7 with lines dt 3 lw 2 title '{name}: sd of alpha (spread)'")
        if "reward" in log[0]:
            plots_top.append(f"'{path}' using 1:4 with points pt 7 ps 0.6 title '{name}: mean reward of the step'")
            plots_top.append(f"'{path}' using 1:5 with lines lw 2 title '{name}: reward, mean of 8 steps'")
        if "mse" in log[0]:
            plots_top.append(f"'{path}' using 1:($6*100) with lines lw 2 title '{name}: MSE x 100'")
    gnuplot(f"""set terminal pngcairo size 900,800 font ',10' noenhanced
set output '{png}'
set multiplot layout 2,1 title 'gate training on SmolLM2-135M-Instruct'
set grid
set key outside bottom center horizontal
set xlabel 'step'
set ylabel 'reward / loss'
plot {', '.join(plots_top)}
set ylabel 'gates'
set yrange [-0.05:1.05]
plot {', '.join(plots_bottom)}
unset multiplot
""")
    for path in data:
        os.remove(path)


def merge(files, out):
    evals = [json.load(open(f)) for f in files]
    key = ("tasks", "lengths", "trials", "seed", "length_for_bytes")
    for e in evals[1:]:
        if any(e[k] != evals[0][k] for k in key):
            sys.exit("error: the runs measured different cases (tasks, lengths, trials or seed differ)")
    fulls = [r["task_accuracy"] for e in evals for r in e["rows"] if r["method"] == "full"]
    if any(f != fulls[0] for f in fulls):
        sys.exit("error: the runs' full-cache rows differ: not the same cases or engine")
    rows, seen = [], set()
    for e in evals:
        for r in e["rows"]:
            k = (r["method"], r["sparsity"], r["policy"])
            if k not in seen:
                seen.add(k)
                rows.append(r)
    rows.sort(key=lambda r: (r["method"] != "full", r["sparsity"]))
    tasks = evals[0]["tasks"]
    os.makedirs(out, exist_ok=True)

    def pct(r, i=None):
        a, sd = (r["mean"], r["sd"]) if i is None else (r["task_accuracy"][i], r["task_sd"][i])
        return f"{a * 100:.0f} ± {sd * 100:.0f}%" if r["method"] == "random" else f"{a * 100:.0f}%"

    lines = ["| method | sparsity | policy | KV bytes | " + " | ".join(tasks) + " | mean |",
             "|---|---:|---|---:|" + "---:|" * len(tasks) + "---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['sparsity']:g} | `{r['policy']}` | {r['kv_bytes'] / 1e6:.2f} MB | "
                     + " | ".join(pct(r, i) for i in range(len(tasks))) + f" | {pct(r)} |")
    # The overview: mean accuracy over tasks, one row per sparsity, one column per method.
    methods = list(dict.fromkeys(r["method"] for r in rows))
    full = next(r for r in rows if r["method"] == "full")
    summary = [f"full cache: {pct(full)}", "", "| sparsity | " + " | ".join(m for m in methods if m != "full") + " |",
               "|---:|" + "---:|" * (len(methods) - 1)]
    for s in sorted({r["sparsity"] for r in rows if r["method"] != "full"}):
        cells = {r["method"]: pct(r) for r in rows if r["sparsity"] == s and r["method"] != "full"}
        summary.append(f"| {s:g} | " + " | ".join(cells.get(m, "") for m in methods if m != "full") + " |")
    e0 = evals[0]
    with open(os.path.join(out, "heads-eval.md"), "w") as f:
        f.write(f"tasks {','.join(tasks)}, lengths {','.join(map(str, e0['lengths']))}, {e0['trials']} trials per "
                f"(task, length), seed {e0['seed']}; KV bytes at {e0['length_for_bytes']} tokens; merged from "
                f"{len(files)} runs\n\n" + "\n".join(summary) + "\n\n" + "\n".join(lines) + "\n")
    dat = os.path.join(out, "heads-eval.dat")
    with open(dat, "w") as f:
        for m in methods:
            f.write(f"# {m}\n")
            for r in rows:
                if r["method"] == m:
                    f.write(f"{r['sparsity']} {r['mean'] * 100} {r['sd'] * 100}\n")
            f.write("\n\n")
    plots = []
    for i, m in enumerate(methods):
        if m == "full":
            plots.append(f"'{dat}' index {i} using 1:2 with points pt 7 ps 2 title 'full cache'")
        elif m == "random":
            plots.append(f"'{dat}' index {i} using 1:2:3 with yerrorlines title 'random heads (mean ± sd over seeds)'")
        else:
            title = {"adapter_weights.tsv": "RLKV gates", "full_attention_heads.tsv": "DuoAttention gates"}.get(m, m)
            plots.append(f"'{dat}' index {i} using 1:2 with linespoints lw 2 title '{title}'")
    gnuplot(f"""set terminal pngcairo size 1100,600 font ',10' noenhanced
set output '{os.path.join(out, 'heads-eval.png')}'
set title 'SmolLM2-135M-Instruct: task accuracy vs sparsity (16 sinks + 64 recent; baselines at equal KV bytes)'
set xlabel 'sparsity (share of streaming heads)'
set ylabel 'accuracy, mean over tasks (%)'
set xrange [-0.05:1.05]
set yrange [-5:105]
set key outside right top
set grid
plot {', '.join(plots)}
""")
    os.remove(dat)
    print("\n".join(summary))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["curve", "merge"])
    p.add_argument("inputs", nargs="+")
    p.add_argument("-o", "--out", required=True)
    a = p.parse_args()
    curve(a.inputs, a.out) if a.what == "curve" else merge(a.inputs, a.out)


if __name__ == "__main__":
    main()
