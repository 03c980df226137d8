#!/usr/bin/env python3
"""Draws the performance pictures of docs/performance.md from bench output.

    python3 bench/plots.py DATA_DIR OUT_DIR      (what `make plots` runs)

DATA_DIR holds what the benches wrote: throughput.dat and waits8.dat
(`bench_mt data=DIR`), and bench_python.txt (bench/bench_python.py's table).
OUT_DIR gets throughput.png, waits8.png and python.png. Needs matplotlib
(Debian: python3-matplotlib).
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    "fifolock": "fifolock_mt (FIFO)",
    "textbook": "textbook FIFO lock",
    "ticket": "ticket-ordered textbook lock",
    "spinticket": "ticket spinlock (FIFO floor)",
    "mutex": "pthread_mutex (barging)",
    "rwlock": "pthread_rwlock (barging)",
}


def throughput(data, out):
    with open(os.path.join(data, "throughput.dat")) as f:
        rows = [line.split() for line in f if line.strip()]
    names, rows = rows[0][1:], rows[1:]
    threads = [int(r[0]) for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for i, name in enumerate(names):
        ax.plot(threads, [float(r[i + 1]) / 1e6 for r in rows], marker="o",
                label=LABELS.get(name, name), linewidth=2.5 if name == "fifolock" else 1.2)
    ax.set_xlabel("threads (on 2 CPUs)")
    ax.set_ylabel("million acquire+release per second")
    ax.set_xticks(threads)
    ax.set_yscale("log")
    ax.set_title("Contended, empty critical section (median of repeats, log scale)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "throughput.png"), dpi=110)


def waits(data, out):
    series = {}
    with open(os.path.join(data, "waits8.dat")) as f:
        next(f)
        for line in f:
            name, us, cdf = line.split()
            series.setdefault(name, ([], []))
            series[name][0].append(float(us))
            series[name][1].append(float(cdf))
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, (x, y) in series.items():
        ax.step(x, [1 - v for v in y], where="post", label=LABELS.get(name, name),
                linewidth=2.5 if name == "fifolock" else 1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wait in acquire (microseconds)")
    ax.set_ylabel("fraction of acquires that waited longer")
    ax.set_title("8 threads on 2 CPUs, exclusive: the tail of the waits")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "waits8.png"), dpi=110)


def python(data, out):
    rows = []
    with open(os.path.join(data, "bench_python.txt")) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 4 and cells[0] not in ("case", "") and not cells[0].startswith("-"):
                try:
                    rows.append((cells[0], cells[1], float(cells[5].rstrip("x"))))
                except (ValueError, IndexError):
                    pass
    cases = list(dict.fromkeys(r[0] for r in rows))
    impls = list(dict.fromkeys(r[1] for r in rows))
    fig, ax = plt.subplots(figsize=(7.2, 4))
    width = 0.8 / max(len(impls), 1)
    for j, impl in enumerate(impls):
        xs, ys = [], []
        for i, case in enumerate(cases):
            for r in rows:
                if r[0] == case and r[1] == impl:
                    xs.append(i + j * width)
                    ys.append(r[2])
        ax.bar(xs, ys, width, label=impl)
    ax.set_xticks([i + width * (len(impls) - 1) / 2 for i in range(len(cases))])
    ax.set_xticklabels(cases)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel("time, relative to the pure-Python lock (lower is better)")
    ax.set_title("Python asyncio: fifolock against asyncio and pure Python")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "python.png"), dpi=110)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data, out = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    throughput(data, out)
    waits(data, out)
    if os.path.exists(os.path.join(data, "bench_python.txt")):
        python(data, out)
    print(f"plots in {out}")


if __name__ == "__main__":
    main()
