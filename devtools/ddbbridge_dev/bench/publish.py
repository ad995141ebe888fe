"""Run the bench and write its outputs: bench-results/ always, docs/bench/ + README with --publish."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from ddbbridge_dev.bench import chart, report
from ddbbridge_dev.bench.run import run_bench
from ddbbridge_dev.bench.settings import BenchSettings
from ddbbridge_dev.state import project_root

DOCS = Path("docs") / "bench"
IMAGE = "docs/bench/latest.png"


def settings_from(args: argparse.Namespace) -> BenchSettings:
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    unknown = set(phases) - {"ours", "naive", "conflicts"}
    if unknown:
        raise ValueError(f"unknown phases: {sorted(unknown)}")
    return BenchSettings(
        rtt_ms=args.rtt_ms,
        load_share=args.load_share,
        load_seconds=args.load_seconds,
        naive_writes=args.naive_writes,
        phases=phases,
        profile=args.profile,
    )


def write_outputs(document: dict[str, object], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    paths = {
        "json": out / f"bench-{stamp}.json",
        "markdown": out / f"bench-{stamp}.md",
        "png": out / f"bench-{stamp}.png",
    }
    text = json.dumps(document, indent=1, sort_keys=True) + "\n"
    paths["json"].write_text(text, encoding="utf-8")
    paths["markdown"].write_text(report.render_markdown(document), encoding="utf-8")
    chart.draw(document, paths["png"])
    for kind, suffix in (("json", "json"), ("markdown", "md"), ("png", "png")):
        shutil.copyfile(paths[kind], out / f"latest.{suffix}")
    return paths


def publish(paths: dict[str, Path], root: Path) -> None:
    """docs/bench/latest.{json,md,png} and the README section, all from the same run."""
    docs = root / DOCS
    docs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(paths["json"], docs / "latest.json")
    shutil.copyfile(paths["markdown"], docs / "latest.md")
    shutil.copyfile(paths["png"], docs / "latest.png")
    document = json.loads(paths["json"].read_text(encoding="utf-8"))
    readme = root / "README.md"
    readme.write_text(
        report.replace_section(readme.read_text(encoding="utf-8"), report.readme_section(document, IMAGE)),
        encoding="utf-8",
    )


def main(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except ValueError as error:
        print(f"ddbbridge bench: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    document = run_bench(settings, out)
    paths = write_outputs(document, out)
    print(report.render_markdown(document))
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    if args.publish:
        publish(paths, project_root())
        print(f"published to {DOCS}/ and README.md")
    return 0
