"""Run the command line in-process, as the tests do."""

from sprkit.app.cli import main


def run_cli(capsys, argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `sprkit *argv` (arguments converted with str)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
