"""``make demo`` with packing ÷ without (``make bench-demo``): the whole study, twice per repetition.

Covered: ``lorasweep run configs/demo.yaml`` with ``sweep.pack`` off (the default) and ``auto``, one
after the other on this machine, each into a fresh folder under ``runs/bench/``; per run the wall clock
and the CPU time of the study's processes (the driver and its workers), and per batch size the trial
seconds each trial's ``status.json`` records (a packed member's share of its group) with the packed
groups' sizes.  ``--reps`` repetitions (the two runs alternate, which one goes first too), median and
[min, max] of the per-repetition ratios.  Each run takes ~12-14 min here, so the default is one
repetition; the machine should have nothing else to do meanwhile (both runs use the demo's 2 workers).

Not covered: the report's numbers (packed members equal their trials alone to rounding only:
docs/method.md); a GPU.

Writes ``bench/results/demo_packing.json`` and ``bench/results/demo_packing.md``.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"
WORK = ROOT / "runs" / "bench"


def run_study(pack: str, out_dir: Path, config: str) -> dict:
    """One study into ``out_dir`` (emptied first); wall and CPU seconds, and trial seconds by batch size."""
    shutil.rmtree(out_dir, ignore_errors=True)
    args = ["run", config, f"output_dir={out_dir}", f"sweep.pack={pack}"]
    code = f"import sys; from lorasweep.cli import main; sys.exit(main({args!r}))"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(
            f"demo_packing: the study with sweep.pack={pack} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"pack": pack, "wall_s": wall, "cpu_s": cpu, **trial_seconds(out_dir)}


def trial_seconds(out_dir: Path) -> dict:
    by_batch: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    groups: collections.Counter = collections.Counter()
    for status in sorted((out_dir / "trials").glob("*/status.json")):
        config = json.loads((status.parent / "config.json").read_text())
        prov = json.loads((status.parent / "provenance.json").read_text())
        b = int(config["trial"]["batch_size"])
        by_batch[b]["trial_s"] += json.loads(status.read_text()).get("seconds", 0.0)
        by_batch[b]["trials"] += 1
        for stage, seconds in prov.get("timings", {}).items():
            by_batch[b][f"{stage}_s"] += seconds
        if "packed" in prov:
            groups[f"B={b} K={len(prov['packed']['group'])}"] += 1
    return {
        "trials": sum(c["trials"] for c in by_batch.values()),
        "by_batch_size": {str(b): dict(by_batch[b]) for b in sorted(by_batch)},
        "packed_members": dict(groups),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from packing import summary  # bench/packing.py's median [min, max]

    from lorasweep import results

    reps = []
    for rep in range(args.reps):
        order = ("off", "auto") if rep % 2 == 0 else ("auto", "off")
        runs = {pack: run_study(pack, WORK / f"demo-pack-{pack}", args.config) for pack in order}
        reps.append(runs)
        off, on = runs["off"], runs["auto"]
        print(
            f"rep {rep + 1}: wall {off['wall_s']:.0f} / {on['wall_s']:.0f} s = {off['wall_s'] / on['wall_s']:.2f}x, "
            f"cpu {off['cpu_s']:.0f} / {on['cpu_s']:.0f} s = {off['cpu_s'] / on['cpu_s']:.2f}x",
            flush=True,
        )
    batches = list(reps[0]["off"]["by_batch_size"])
    report = {
        "config": args.config,
        "reps": args.reps,
        "speedup_wall": summary([r["off"]["wall_s"] / r["auto"]["wall_s"] for r in reps]),
        "speedup_cpu": summary([r["off"]["cpu_s"] / r["auto"]["cpu_s"] for r in reps]),
        "speedup_trial_seconds_by_batch_size": {
            b: summary(
                [
                    r["off"]["by_batch_size"][b]["trial_s"] / r["auto"]["by_batch_size"][b]["trial_s"]
                    for r in reps
                ]
            )
            for b in batches
        },
        "runs": reps,
        "provenance": results.provenance(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_packing.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / "demo_packing.md").write_text(text)
    print(text)
    return 0


def markdown(r: dict) -> str:
    prov, last = r["provenance"], r["runs"][-1]

    def fmt(s: dict) -> str:
        return f"**{s['median']:.2f}x** [{s['min']:.2f}, {s['max']:.2f}]"

    lines = [
        "# `make demo` with packing ÷ without (`make bench-demo`, `bench/demo_packing.py`)",
        "",
        f"- `lorasweep run {r['config']}` with `sweep.pack=off` and `sweep.pack=auto`, one after the other, "
        f"{r['reps']} repetition(s); median [min, max] of the per-repetition ratios",
        f"- cpu: {prov['hardware']['processor']}, {prov['hardware']['cpu_count']} cores; "
        f"git {str(prov['git_sha'])[:12]}{' (dirty)' if prov['git_dirty'] else ''}",
        f"- last repetition: off {last['off']['wall_s']:.0f} s wall, {last['off']['cpu_s']:.0f} s CPU; "
        f"auto {last['auto']['wall_s']:.0f} s wall, {last['auto']['cpu_s']:.0f} s CPU; "
        f"{last['auto']['trials']} trials; packed members: "
        + (", ".join(f"{k}: {v}" for k, v in last["auto"]["packed_members"].items()) or "none"),
        "",
        f"| whole study | wall clock {fmt(r['speedup_wall'])} | CPU time {fmt(r['speedup_cpu'])} |",
        "|---|---|---|",
        "",
        "| B | trial seconds off (last rep) | auto (last rep) | speed-up |",
        "|---:|---:|---:|---:|",
    ]
    for b, s in r["speedup_trial_seconds_by_batch_size"].items():
        lines.append(
            f"| {b} | {last['off']['by_batch_size'][b]['trial_s']:.0f} | "
            f"{last['auto']['by_batch_size'][b]['trial_s']:.0f} | {fmt(s)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
