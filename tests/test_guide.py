"""The guide's examples run as written."""

import re
import runpy
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"


def _example(name: str) -> str:
    text = GUIDE.read_text()
    match = re.search(rf"<!-- guide-example: {name} .*?-->\n```python\n(.*?)```", text, re.S)
    assert match, f"example {name} not found in the guide"
    return match.group(1)


def test_prune_your_own_model_runs(tmp_path, capsys):
    script = tmp_path / "example.py"
    script.write_text(_example("prune-your-own-model"))
    runpy.run_path(str(script), run_name="__main__")
    assert "structures," in capsys.readouterr().out


def test_readme_python_example_runs_on_the_public_api_only(tmp_path):
    import sprkit

    readme = GUIDE.parents[1] / "README.md"
    code = re.search(r"```python\n(.*?)```", readme.read_text(), re.S).group(1)
    used = set(re.findall(r"\bsprkit\.(\w+)", code))
    assert used and used <= set(sprkit.__all__), used - set(sprkit.__all__)
    script = tmp_path / "readme.py"
    script.write_text(code)
    names = runpy.run_path(str(script), run_name="__main__")
    spr, mip = names["spr"], names["mip"]
    assert names["bigm"] <= spr.value * (1 + 1e-7)
    assert spr.lower_bound <= mip.objective * (1 + 1e-9) and mip.status == "optimal"
    assert names["z"].shape == (8,)
    assert names["small"][2].out_features == 3
    assert names["small"][0].out_features < 32


def test_every_public_name_resolves_and_import_stays_light():
    import subprocess
    import sys

    probe = (
        "import sys, sprkit; "
        "assert [n for n in sprkit.__all__ if getattr(sprkit, n, None) is None] == []; "
    )
    light = (
        "import sys, sprkit; "
        "heavy = [m for m in ('torch', 'cvxpy', 'matplotlib', 'pyomo') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    for script in (probe, light):
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
