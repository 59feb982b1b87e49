"""Plots running perplexity and KV memory against stream position from the
CSV files `edgekv perplexity --stream --curve` writes (tools/cache_results.sh).

    python tools/plot_streaming.py RESULTS_DIR [F16_WINDOWED_PPL]
"""
import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    "sink": "sink (4 sinks + 508 recent)",
    "sliding_window": "sliding_window 512",
    "dynamic": "dynamic (full cache)",
}


def read_curve(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    tokens = [int(r["tokens"]) for r in rows]
    recent = [float(r["recent_ppl"]) for r in rows]
    running = [float(r["running_ppl"]) for r in rows]
    mib = [int(r["kv_used_bytes"]) / 2**20 for r in rows]
    return tokens, running, recent, mib


def main():
    out = Path(sys.argv[1])
    reference = float(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].strip() else None
    fig, (ax_ppl, ax_mem) = plt.subplots(2, 1, figsize=(9, 7), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1.3]})
    for name, label in LABELS.items():
        path = out / f"stream_{name}.csv"
        if not path.exists():
            continue
        tokens, running, recent, mib = read_curve(path)
        line, = ax_ppl.plot(tokens, recent, label=f"{label}: last 256 tokens", alpha=0.55)
        ax_ppl.plot(tokens, running, color=line.get_color(), linewidth=2.2, label=f"{label}: running")
        ax_mem.plot(tokens, mib, color=line.get_color(), label=label)
    if reference:
        ax_ppl.axhline(reference, color="black", linestyle=":", label=f"f16 windowed ppl, ctx 1024 ({reference:.2f})")
    ax_ppl.axvline(8192, color="grey", linestyle="--", linewidth=1)
    ax_ppl.text(8192, ax_ppl.get_ylim()[1] * 0.95, " trained context (8192)", color="grey", va="top")
    ax_ppl.set_yscale("log")
    ax_ppl.set_ylabel("perplexity")
    ax_ppl.set_title("SmolLM2-135M-Instruct Q4_1: license texts streamed through one cache")
    ax_ppl.legend(fontsize=8)
    ax_mem.set_ylabel("KV MiB")
    ax_mem.set_xlabel("tokens streamed")
    ax_mem.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "streaming_ppl.png", dpi=110)
    print(f"wrote {out / 'streaming_ppl.png'}")


if __name__ == "__main__":
    main()
