"""`nctui plot`: each figure family checked for what it holds (scales, series, labels, the numbers
drawn), files that are the same bytes twice, and the command's errors (exit 2)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("matplotlib")   # the [plot] extra; the [test] extra installs it

from compare_fixtures import nc1, rank, write_sweep
from nctui.analysis.runs import load_runs
from nctui.figures import FigureError, draw, save
from nctui.report_commands import plot
from report_fixtures import Finals, write_run
from tui_fixtures import EVAL_STEPS, LAYERS, spectrum

T = [i / (len(EVAL_STEPS) - 1) for i in range(len(EVAL_STEPS))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list:
    """compare_fixtures' sweep: weight decay 0 and 1e-2, seeds 0 and 1, layers fc1-fc4, C = 10."""
    return load_runs([write_sweep(tmp_path_factory.mktemp("plot"))])


def labelled(ax) -> dict:
    """label -> line of an axes (lines without a label left out)."""
    return {line.get_label(): line for line in ax.lines if not line.get_label().startswith("_")}


def visible(figure) -> list:
    return [ax for ax in figure.axes if ax.get_visible()]


def test_nc_holds_four_log_panels_with_a_seed_mean_line_per_point(runs: list) -> None:
    axes = visible(draw("nc", runs))
    assert [ax.get_title() for ax in axes] == ["NC1", "NC2 (ETF error)", "NC3", "NC4"]
    assert {ax.get_yscale() for ax in axes} == {"log"}
    for ax in axes:
        assert list(labelled(ax)) == ["λ=0", "λ=1e-2"]
        assert len(ax.collections) == 2                          # a ± std band per point (2 seeds)
    line = labelled(axes[0])["λ=1e-2"]
    assert list(line.get_xdata()) == EVAL_STEPS
    assert line.get_ydata() == pytest.approx([(nc1(1e-2, 0, t) + nc1(1e-2, 1, t)) / 2 for t in T])


def test_rank_has_a_panel_per_layer_rank_and_stable_rank_and_the_c_minus_1_line(runs: list) -> None:
    axes = visible(draw("rank", runs))
    assert [ax.get_title() for ax in axes] == LAYERS
    assert {ax.get_yscale() for ax in axes} == {"log"}
    lines = labelled(axes[0])
    assert list(lines) == ["λ=0", "stable rank λ=0", "λ=1e-2", "stable rank λ=1e-2", "C − 1"]
    assert list(lines["C − 1"].get_ydata()) == [9, 9]
    assert lines["stable rank λ=0"].get_linestyle() == "--"
    assert lines["λ=1e-2"].get_ydata()[-1] == pytest.approx((rank(1e-2, 0, 1.0, 0) + rank(1e-2, 1, 1.0, 0)) / 2)
    assert not any("ceiling" in label for label in lines)       # 3.9e7: not binding, not drawn


def test_a_binding_rank_ceiling_is_drawn(tmp_path: Path) -> None:
    runs = load_runs([write_run(tmp_path / "run", finals=Finals(rank_ceiling=20.0))])
    axes = visible(draw("rank", runs))
    assert labelled(axes[0])["rank ceiling run"].get_ydata()[0] == 20.0
    assert "rank ceiling run" not in labelled(axes[3])          # the classifier's 1e6 does not bind


def test_spectrum_shows_the_final_singular_values_and_the_tolerance(runs: list) -> None:
    axes = visible(draw("spectrum", runs))
    assert [ax.get_title() for ax in axes] == LAYERS and {ax.get_yscale() for ax in axes} == {"log"}
    lines = labelled(axes[1])
    assert list(lines) == ["λ=0", "λ=1e-2", "tol 1e-3"]
    assert list(lines["λ=0"].get_xdata()) == list(range(1, 33))
    assert lines["λ=0"].get_ydata() == pytest.approx(spectrum(1, 1.0))
    assert list(lines["tol 1e-3"].get_ydata()) == [1e-3, 1e-3]


def test_noise_shows_drift_and_gradient_noise_on_log_axes(runs: list) -> None:
    axes = visible(draw("noise", runs))
    assert [ax.get_title() for ax in axes] == ["weight drift", "gradient noise"]
    assert {ax.get_yscale() for ax in axes} == {"log"}
    drift = labelled(axes[0])["λ=1e-2"]
    assert list(drift.get_xdata()) == EVAL_STEPS[1:]             # no drift at the first evaluation
    assert drift.get_ydata()[0] == pytest.approx(2e-4 * 1.05)   # mean over seeds of 2e-4 (1 + 0.1 seed)


def test_bounds_draws_a_log2_panel_per_point_as_neurips_fig_1(runs: list) -> None:
    axes = visible(draw("bounds", runs))
    assert [ax.get_title() for ax in axes] == ["λ=0", "λ=1e-2"]
    for ax in axes:
        assert ax.get_yscale() == "log" and ax.yaxis.get_transform().base == 2
        assert list(labelled(ax)) == ["dense gap bound", "measured gap", "test error", "1"]  # no local bound: FC
    bound = labelled(axes[1])["dense gap bound"]
    assert bound.get_ydata() == pytest.approx([2 ** (9.6 - 10 * t) for t in T])


def test_claims_puts_the_four_claims_and_their_verdicts_in_one_figure(runs: list) -> None:
    axes = visible(draw("claims", runs))
    assert [ax.get_title() for ax in axes] == ["collapse: 4 hold", "low rank: 2 hold, 2 fail",
                                               "noise: 2 hold, 2 fail", "bound: 2 hold, 2 fail"]
    assert [ax.yaxis.get_transform().base for ax in axes] == [10, 10, 10, 2]
    assert list(labelled(axes[3])) == ["λ=0", "λ=1e-2", "gap λ=0", "gap λ=1e-2", "1 (non-vacuous below)"]


def test_vs_param_plots_the_seed_mean_and_std_of_a_final_value_against_the_key(runs: list) -> None:
    figure = draw("vs-param", runs)
    ax = visible(figure)[0]
    assert ax.get_xlabel() == "λ (train.weight_decay)" and ax.get_ylabel() == "layers.hidden.rank"
    line = ax.lines[0]
    assert list(line.get_xdata()) == [0.0, 0.01]
    assert line.get_ydata() == pytest.approx([31.0, 9.5])         # fc1-fc3: 32-k, and 32-round(22-seed)-k
    caps = ax.containers[0].lines[2][0].get_segments()            # the error bars: mean ± sample std
    assert caps[1][:, 1] == pytest.approx([9.5 - math.sqrt(0.5), 9.5 + math.sqrt(0.5)])
    nc = visible(draw("vs-param", runs, metric="nc1"))[0]
    assert nc.get_yscale() == "log" and nc.lines[0].get_ydata() == pytest.approx([1.1, 0.011])


def test_group_by_groups_by_that_key_alone(runs: list) -> None:
    ax = visible(draw("nc", runs, group_by="seed"))[0]
    assert list(labelled(ax)) == ["seed=0", "seed=1"]
    line = labelled(ax)["seed=1"]
    assert line.get_ydata()[-1] == pytest.approx((nc1(0.0, 1, 1.0) + nc1(1e-2, 1, 1.0)) / 2)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "nope"}, "not a figure"),
    ({"name": "nc", "group_by": "train.nothing"}, "no run has this config key"),
    ({"name": "nc", "metric": "nc1"}, "--metric applies to --figure vs-param only"),
    ({"name": "vs-param", "metric": "loss"}, "ambiguous: train.loss, test.loss"),
    ({"name": "vs-param", "metric": "widgets.x"}, "widgets is not a group"),
])
def test_figure_errors_say_what_is_wrong(runs: list, kwargs: dict, message: str) -> None:
    with pytest.raises(FigureError, match=message):
        draw(kwargs.pop("name"), runs, **kwargs)


def test_a_figure_saves_the_same_bytes_twice_without_dates(runs: list, tmp_path: Path) -> None:
    for suffix in ("svg", "pdf"):
        first, second = tmp_path / f"nc1.{suffix}", tmp_path / f"nc2.{suffix}"
        save(draw("nc", runs), first)
        save(draw("nc", runs), second)
        assert first.read_bytes() == second.read_bytes(), suffix
    svg = (tmp_path / "nc1.svg").read_text()
    assert "<dc:date>" not in svg and "Matplotlib v" not in svg and "NC2 (ETF error)" in svg
    assert b"CreationDate" not in (tmp_path / "nc1.pdf").read_bytes()


def test_the_command_writes_the_file_and_refuses_bad_arguments(runs: list, tmp_path: Path) -> None:
    sweep = str(runs[0].path.parent)
    out = tmp_path / "rank.png"
    result = CliRunner().invoke(plot, [sweep, "--figure", "rank", "--out", str(out)])
    assert result.exit_code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "nctui: plot: rank of 4 runs" in result.stderr
    for args, message in ((["--figure", "pie", "--out", "x.png"], "--figure pie: not a figure"),
                          (["--figure", "nc", "--out", "x.jpg"], "one of .pdf, .png, .svg"),
                          (["--figure", "nc", "--out", "x.png", "--group-by", "lr"], "--group-by lr"),
                          (["--figure", "vs-param", "--out", str(tmp_path / "missing" / "x.png")], "cannot write")):
        result = CliRunner().invoke(plot, [sweep, *args])
        assert result.exit_code == 2 and result.stderr.startswith("nctui: error: ") and message in result.stderr


def test_without_matplotlib_plot_exits_2_naming_the_extra(runs: list, tmp_path: Path) -> None:
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from nctui.report_commands import plot\n"
            f"plot([{str(runs[0].path)!r}, '--figure', 'nc', '--out', {str(tmp_path / 'x.png')!r}])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == ('nctui: error: nctui plot needs matplotlib, from the optional extra [plot]: '
                                     'pip install -e ".[plot]"')
    assert not (tmp_path / "x.png").exists()
