"""`nctui open` with several runs or a sweep (its errors, one line and exit 2), and `nctui ls`
listing sweeps beside runs."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from compare_fixtures import config, run_records, write_run, write_sweep
from nctui.cli import main


def nctui(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_ls_lists_sweeps_with_points_done_and_varying_keys_then_runs(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path, started=3)
    write_run(tmp_path / "loose", config(0.0, 0), run_records(0.0, 0))
    result = nctui("ls", str(tmp_path))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "wd-sweep  sweep 3/4 points done  varying train.weight_decay, seed"
    assert lines[1].startswith("loose  completed  400/400 steps") and len(lines) == 2
    inside = nctui("ls", str(sweep_dir)).output.splitlines()
    assert inside[0] == lines[0] and [line.split()[0] for line in inside[1:]] == ["wd=0_s0", "wd=0_s1", "wd=1e-2_s0"]


def test_open_refuses_what_it_cannot_read_in_one_line(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path)
    missing = nctui("open", str(sweep_dir), str(tmp_path / "nope"))
    assert missing.exit_code == 2
    assert missing.stderr == f"nctui: error: {tmp_path / 'nope'}: not a run directory (no such directory)\n"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "sweep.json").write_text("[1, 2")
    broken = nctui("open", str(tmp_path / "broken"))
    assert broken.exit_code == 2 and broken.stderr.endswith("sweep.json: corrupt (not valid JSON)\n")
    assert nctui("open").exit_code == 2
    no_terminal = nctui("open", str(sweep_dir))   # read fine; then it wants a terminal
    assert no_terminal.exit_code == 2 and "nctui open needs a terminal" in no_terminal.stderr
