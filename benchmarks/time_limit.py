"""Benchmark: does `sprkit solve --time-limit T` return on time? Wall clock of the whole command
(process start, imports, instance loading, solve, output) on every instance of the mip_hard
grid, for each method.

    .venv/bin/python benchmarks/time_limit.py [--limit 1] [--methods bnb oa]

Writes docs/benchmarks/time_limit.md (+ .csv).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mip_hard import grid, make_case  # noqa: E402

from sprkit.instances import save_instance  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=1.0)
    parser.add_argument("--methods", nargs="+", default=["bnb", "oa"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 30, 50, 100, 200])
    parser.add_argument("--per-size", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/time_limit.md"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for index, spec in enumerate(grid(args.sizes, args.per_size, args.seed)):
            case = make_case(spec)
            path = save_instance(Path(folder) / f"i{index}.npz", case.instance)
            for method in args.methods:
                command = [sys.executable, "-m", "sprkit", "solve", str(path)]
                command += ["--lam0", repr(case.lam0), "--lam2", repr(case.lam2)]
                command += ["--M", repr(case.M), "--time-limit", str(args.limit), "--json"]
                command += ["--method", method]
                start = time.perf_counter()
                completed = subprocess.run(command, capture_output=True, text=True)
                wall = time.perf_counter() - start
                result = json.loads(completed.stdout) if completed.returncode == 0 else {}
                row = {
                    "instance": index,
                    "structures": spec["structures"],
                    "method": method,
                    "returncode": completed.returncode,
                    "wall_s": wall,
                    "status": result.get("status"),
                    "solve_s": result.get("seconds"),
                    "gap": result.get("gap"),
                }
                rows.append(row)
                print(row, flush=True)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    worst = table.groupby("method")["wall_s"].max()
    summary = "\n".join(
        f"- `{method}`: slowest return {seconds:.2f} s (limit {args.limit:g} s), "
        f"{int((table[table['method'] == method]['returncode'] == 0).sum())} of "
        f"{int((table['method'] == method).sum())} runs exited 0"
        for method, seconds in worst.items()
    )
    args.out.write_text(
        "# Time limit of `sprkit solve`\n\n"
        f"Command: `python benchmarks/time_limit.py --limit {args.limit:g} --methods "
        f"{' '.join(args.methods)}`  \nMachine: {machine}, CPU only. wall_s: the whole "
        "command as a new process (imports and instance loading included).\n\n"
        + summary
        + "\n\n"
        + table.to_markdown(index=False, floatfmt=".3g")
        + "\n"
    )
    print(args.out.read_text())


if __name__ == "__main__":
    main()
