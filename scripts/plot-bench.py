#!/usr/bin/env python3
"""Draw kestrel-bench results: tokens/s against batch size, one line per input length
(and per output length when there are several), log-2 batch axis.

    scripts/plot-bench.py BENCH.json OUT.png     (kestrel-bench --json > BENCH.json)
    scripts/plot-bench.py --check                exit 0 when matplotlib imports

kestrel-bench --plot OUT.png runs this script itself. Needs matplotlib (Debian:
apt-get install python3-matplotlib).
"""
import json
import sys


def main() -> int:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("plot-bench.py: matplotlib is missing (Debian: apt-get install python3-matplotlib)", file=sys.stderr)
        return 3
    if sys.argv[1:] == ["--check"]:
        return 0
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        report = json.load(f)
    cases = report["cases"]
    outputs = sorted({c["output"] for c in cases})
    fig, ax = plt.subplots(figsize=(8, 5))
    for inp in sorted({c["input"] for c in cases}):
        for out in outputs:
            rows = sorted((c["batch"], c["tokens_per_second"]) for c in cases if c["input"] == inp and c["output"] == out)
            if not rows:
                continue
            label = f"input {inp}" + (f", output {out}" if len(outputs) > 1 else "")
            ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({c["batch"] for c in cases}))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("batch size")
    ax.set_ylabel("generated tokens/s (batch x output / total latency)")
    title = f"kestrel-bench: {report['model'].split('/')[-1]} on {report['device']} ({report['dtype']})"
    if "ceilings" in report:
        title += f"\n{report['ceilings']['name']}"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
