"""Compare mode's pieces without the app: colours and line styles from the varying keys, the
vs-parameter axis, dashes, bands and x labels of the compare plot."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from compare_fixtures import LEARNING_RATES, nc1, write_grid, write_sweep
from nctui.analysis.runs import load_runs
from nctui.tui.compare.plot import DASHED, DOTTED, SOLID, Band, band_points, styled_points, x_axis
from nctui.tui.compare.state import CompareState
from nctui.tui.compare.vsparam import param_axis, vs_data
from nctui.tui.widgets.plot import PALETTE


def grid_state(tmp_path: Path) -> CompareState:
    return CompareState(load_runs(write_grid(tmp_path)))


def test_two_varying_keys_are_colour_and_line_style_and_g_swaps_them(tmp_path: Path) -> None:
    state = grid_state(tmp_path)
    assert state.keys == ["train.lr", "train.weight_decay"] and state.style_key == "train.weight_decay"
    by_name = {run.name: run for run in state.runs}
    run = by_name["lr=0.1_wd=0.01"]
    assert (state.colour(run), state.style(run)) == (PALETTE[2], 1)
    assert (state.colour(by_name["lr=0.001_wd=0.0"]), state.style(by_name["lr=0.001_wd=0.0"])) == (PALETTE[0], 0)
    assert state.point_label(run) == "lr=0.1 λ=1e-2"
    state.rotate_keys()
    assert state.style_key == "train.lr" and (state.colour(run), state.style(run)) == (PALETTE[1], 2)
    state.metric_index = 5   # gap bound vs gap: the styles tell the two quantities apart
    assert state.style_key is None and state.colour_keys == ["train.weight_decay", "train.lr"]


def test_colours_stay_with_their_runs_when_others_are_filtered_out(tmp_path: Path) -> None:
    state = grid_state(tmp_path)
    before = {run.name: state.colour(run) for run in state.runs}
    state.set_filter("lr>=0.01")
    assert [run.name for run in state.visible()] == ["lr=0.01_wd=0.0", "lr=0.01_wd=0.01", "lr=0.1_wd=0.0",
                                                      "lr=0.1_wd=0.01"]
    assert {run.name: state.colour(run) for run in state.visible()} == {name: before[name] for name in
                                                                         ["lr=0.01_wd=0.0", "lr=0.01_wd=0.01",
                                                                          "lr=0.1_wd=0.0", "lr=0.1_wd=0.01"]}


def test_the_vs_parameter_view_is_log_in_x_for_log_spaced_values(tmp_path: Path) -> None:
    state = grid_state(tmp_path)
    data, labels, title, legend = vs_data(state)
    assert title == "NC1  Tr(ΣW ΣB⁺)/C (log) vs lr (log x) · newest"
    assert labels == [(-3.0, "1e-3"), (-2.0, "1e-2"), (-1.0, "0.1")]
    lines = {s.label: s.points for s in data.series}
    assert lines["λ=1e-2"] == [(pytest.approx(math.log10(lr)), pytest.approx(nc1(0.01, 0, 1.0, lr)))
                               for lr in LEARNING_RATES]
    assert "λ=0" in legend and "λ=1e-2" in legend


def test_param_axis() -> None:
    assert param_axis([1e-3, 1e-2, 1e-1, 1e-2]) == ({0.001: -3.0, 0.01: -2.0, 0.1: pytest.approx(-1.0)}, True)
    assert param_axis([0, 1e-3, 1e-2]) == ({0.001: -3.0, 0.01: -2.0, 0: -4.0}, True)   # 0 one step left
    assert param_axis([0, 1e-2]) == ({0: 0.0, 0.01: 0.01}, False)
    assert param_axis([1, 2, 3]) == ({1: 1.0, 2: 2.0, 3: 3.0}, False)
    assert param_axis(["fc", "cnn", [1, 2]]) == ({"cnn": 0.0, "fc": 1.0, (1, 2): 2.0}, False)


def test_a_sweep_without_a_second_key_has_no_line_styles(tmp_path: Path) -> None:
    state = CompareState(load_runs([write_sweep(tmp_path)]))
    assert state.style_key is None and {state.style(run) for run in state.runs} == {0}
    assert [state.colour(run) for run in state.runs] == [PALETTE[0]] * 2 + [PALETTE[1]] * 2


def test_dashes_dots_and_bands_follow_the_dot_columns() -> None:
    points = [(0.0, 0.0), (10.0, 10.0)]
    assert styled_points(points, SOLID, "linear", 0, 10, 11) == points
    dashed = styled_points(points, DASHED, "linear", 0, 10, 11)
    assert dashed == [(0, 0), (1, 1), (2, 2), (3, None), (6, 6), (7, 7), (8, 8), (9, None)]
    assert styled_points(points, DOTTED, "linear", 0, 10, 11) == [(0, 0), (0, None), (3, 3), (3, None), (6, 6),
                                                                  (6, None), (9, 9), (9, None)]
    logged = styled_points([(0.0, 1.0), (2.0, 100.0)], DASHED, "log10", 0, 2, 3)
    assert logged == [(0, 1.0), (1, pytest.approx(10.0)), (2, pytest.approx(100.0))]   # straight on the log axis
    assert styled_points([(0.0, None), (10.0, 10.0)], DASHED, "linear", 0, 10, 11) == []
    band = Band("", [(0.0, 1.0), (4.0, 1.0)], "#ffffff", high=[(0.0, 3.0), (4.0, 5.0)])
    assert band_points(band, "linear", 0, 4, 5) == [(0, 1.0, ), (0, 3.0), (0, None), (2, 1.0), (2, 4.0), (2, None),
                                                    (4, 1.0), (4, 5.0), (4, None)]


def test_x_labels_sit_under_their_x_and_never_touch() -> None:
    axis = x_axis(2, 20, 0.0, 1.0, [(0.0, "0"), (0.5, "1e-2"), (0.52, "2e-2"), (1.0, "0.1")]).plain
    assert axis == "  └0───────1e-2─────0.1"   # 1e-2 centred on column 10 of 20; 2e-2 touches it
