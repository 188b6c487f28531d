"""`make bench`'s report: medians and spreads over the rounds, the shipped server's ratios to
the others round by round, the targets, results.md and bench.png."""
import statistics
from pathlib import Path

from harness.bench import OURS, SERVERS


def spread(values: list[float | None]) -> dict:
    """Median and min-max of the rounds that measured the quantity (`hey` prints no percentile it
    has too few answers for)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def summarize(rounds: list[dict]) -> dict:
    """Median and min-max over the rounds of one server at one concurrency."""
    summary = {key: spread([p[key] for p in rounds])
               for key in ("rps", "p50_ms", "p99_ms", "server_cpu_percent", "client_cpu_percent")}
    summary["non_2xx"] = sum(p["non_2xx"] + p["transport_errors"] for p in rounds)
    return summary


def ratios(ours: list[dict], theirs: list[dict]) -> dict:
    """Ours over theirs, round by round (each pair measured minutes apart at most): median and min-max."""
    return {key: spread([a[key] / b[key] if a[key] and b[key] else None for a, b in zip(ours, theirs)])
            for key in ("rps", "p50_ms", "p99_ms")}


def targets(results: dict) -> list[tuple[str, str, bool]]:
    """Issue 15's targets, each with what this run measured and whether it is met."""
    summary, vs_plain = results["summary"][OURS], results["ratios"]["plain_python"]
    found = []
    if 1 in summary:
        r = vs_plain[1]["p50_ms"]["median"]
        found.append(("c=1: p50 <= 1.2x plain Python's", f"{r:.2f}x", r <= 1.2))
    for c in (16, 64):
        if c in summary:
            r = vs_plain[c]["rps"]["median"]
            found.append((f"c={c}: req/s >= 3x plain Python's", f"{r:.2f}x", r >= 3))
    if 16 in summary:
        p99 = summary[16]["p99_ms"]["median"]
        found.append(("c=16: p99 <= 30 ms", f"{p99} ms", p99 <= 30))
    if 64 in summary and 256 in summary:
        share = summary[256]["rps"]["median"] / summary[64]["rps"]["median"]
        growth = summary[256]["p99_ms"]["median"] / summary[64]["p99_ms"]["median"]
        found += [("c=256: req/s >= 90% of c=64's", f"{share:.0%}", share >= 0.9),
                  ("c=256: p99 <= 4x c=64's", f"{growth:.1f}x", growth <= 4),
                  ("c=256: 0 non-2xx", str(summary[256]["non_2xx"]), summary[256]["non_2xx"] == 0)]
    found.append(("cold start <= 10 s", f"{results['cold_start_s'][OURS]} s", results["cold_start_s"][OURS] <= 10))
    return found


def cell(s: dict, digits: int = 1) -> str:
    if s["median"] is None:
        return "-"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def table(results: dict) -> str:
    lines = [f"{results['rounds']} alternating rounds, {results['warmup_s']} s warm-up + {results['seconds_per_point']} s "
             "per point; median (min-max) over the rounds.", "",
             "| c | server | req/s | p50 ms | p99 ms | non-2xx | server CPU % | hey CPU % |",
             "|---|---|---|---|---|---|---|---|"]
    for c in results["concurrency"]:
        for name in (n for n in SERVERS if c in results["summary"][n]):
            s = results["summary"][name][c]
            lines.append(f"| {c} | {name} | {cell(s['rps'], 0)} | {cell(s['p50_ms'])} | {cell(s['p99_ms'])} "
                         f"| {s['non_2xx']} | {cell(s['server_cpu_percent'], 0)} | {cell(s['client_cpu_percent'], 0)} |")
    others = [n for n in SERVERS if n != OURS]
    lines += ["", "Shipped over each other server, round by round: median (min-max).", "",
              "| c | " + " | ".join(f"req/s ÷ {n} | p50 ÷ {n}" for n in others) + " |",
              "|---|" + "---|---|" * len(others)]
    for c in results["concurrency"]:
        row = [cell(results["ratios"][n][c][k], 2) if c in results["ratios"][n] else "-"
               for n in others for k in ("rps", "p50_ms")]
        lines.append(f"| {c} | " + " | ".join(row) + " |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'yes' if met else '**no**'} |" for name, value, met in targets(results)]
    if 1 in results["concurrency"]:
        floor = ratios(results["points"]["floor"][1], results["points"]["plain_python"][1])["p50_ms"]
        lines += ["", f"At c=1 the floor's p50 (TorchServe with a handler that does nothing) is {cell(floor, 2)} "
                  "times plain Python's: the part of the c=1 ratio that no handler can remove."]
    ceiling = results["in_process_ceiling_images_per_s"]
    lines += ["", "In-process ceiling (1 thread, no HTTP), images/s: "
              + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in ceiling.items()),
              "", "Cold start (start to answering): "
              + ", ".join(f"{n}: {s} s" for n, s in results["cold_start_s"].items())]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rps_ax, p99_ax) = plt.subplots(1, 2, figsize=(11, 4))
    cs = results["concurrency"]
    for name in SERVERS:
        summary = results["summary"][name]
        measured = [c for c in cs if c in summary]
        rps_ax.plot(measured, [summary[c]["rps"]["median"] for c in measured], marker="o", label=name)
        p99_ax.plot(measured, [summary[c]["p99_ms"]["median"] or float("nan") for c in measured], marker="o", label=name)
    for ax, title in ((rps_ax, "throughput (requests/s, median)"), (p99_ax, "p99 latency (ms, median)")):
        ax.set(xscale="log", title=title, xlabel="concurrent clients")
        ax.legend()
    p99_ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
