"""Certified solution files of the instance library (models/*.sol), a plain-text format.

One `key value` pair per line, `#` starts a comment, like MIPLIB's solution files:

    instance   synth_g12.npz      (path relative to the .sol file)
    lam0       0.5
    lam2       0.1
    M          3.0
    objective  1.2345678901234567 (MIP optimum, recomputed from the data)
    bound      1.2345678901234560 (certified lower bound)
    kept       1 3 5              (sorted structure ids kept at the optimum; empty if none)
    checked    scip 1.2345679     (independent solver and the objective of its solution)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sprkit.atomic import write_atomically
from sprkit.errors import InstanceError


@dataclass(frozen=True)
class SolutionRecord:
    """One certified optimum of an instance for given (lam0, lam2, M)."""

    instance: str
    lam0: float
    lam2: float
    M: float
    objective: float
    bound: float
    kept: list[int]
    checked: str

    def instance_path(self, solution_file: Path) -> Path:
        return Path(solution_file).parent / self.instance


def write_solution(path: str | Path, record: SolutionRecord, header: str = "") -> None:
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [
        f"instance {record.instance}",
        f"lam0 {record.lam0!r}",
        f"lam2 {record.lam2!r}",
        f"M {record.M!r}",
        f"objective {record.objective!r}",
        f"bound {record.bound!r}",
        "kept " + " ".join(map(str, record.kept)),
        f"checked {record.checked}",
    ]
    write_atomically(Path(path), lambda temporary: temporary.write_text("\n".join(lines) + "\n"))


def read_solution(path: str | Path) -> SolutionRecord:
    fields: dict[str, str] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        fields[key] = value.strip()
    required = ("instance", "lam0", "lam2", "M", "objective", "bound", "kept")
    missing = [key for key in required if key not in fields]
    if missing:
        raise InstanceError(f"{path}: solution file lacks {', '.join(missing)}")
    try:
        return SolutionRecord(
            instance=fields["instance"],
            lam0=float(fields["lam0"]),
            lam2=float(fields["lam2"]),
            M=float(fields["M"]),
            objective=float(fields["objective"]),
            bound=float(fields["bound"]),
            kept=[int(v) for v in fields["kept"].split()],
            checked=fields.get("checked", ""),
        )
    except ValueError as exc:
        raise InstanceError(f"{path}: malformed value ({exc})") from None
