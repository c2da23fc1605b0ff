"""The compare screen: a header saying what varies, the runs sidebar beside the time-series
or vs-hyperparameter view, a strip with each point's value at the scrubbed step, and the
keys (compare/help.py lists them). Every key changes the CompareState and redraws."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Input

from nctui.analysis.runs import FilterError, format_value, hashable, short_key, sort_key, value_of
from nctui.tui.compare.help import CompareHelp
from nctui.tui.compare.metrics import METRICS
from nctui.tui.compare.plot import STYLE_MARKS
from nctui.tui.compare.sidebar import STATUS_COLORS, STATUS_MARKS, RunsSidebar
from nctui.tui.compare.state import CompareState
from nctui.tui.compare.timeplot import TimePane
from nctui.tui.compare.vsparam import VsParamPane
from nctui.tui.format import fmt_int, fmt_num
from nctui.tui.widgets.item_row import ItemRow

MAX_VALUES_SHOWN = 5   # of a varying key in the header


def header_items(state: CompareState, title: str) -> tuple[list[Text], int | None]:
    """`nctui compare <sweep> · 4 runs · varying λ {0, 1e-2} · seeds 0, 1 · ✔ 4/4 completed`,
    and the index of the item that gives way first: the title, or without one what varies."""
    runs = state.runs
    items = [Text("nctui", style="bold #5fafff"), Text(" compare ", style="bold reverse #5fd7d7"),
             *([Text(title, style="bold")] if title else []), Text(f"{len(runs)} runs", style="dim")]
    varying = Text("varying ", style="dim") if state.keys else Text("nothing varies", style="dim")
    for n, key in enumerate(state.keys):
        values = sorted({hashable(value_of(run, key)) for run in runs}, key=sort_key)
        shown = ", ".join(format_value(v) for v in values[:MAX_VALUES_SHOWN])
        more = f", … {len(values)} values" if len(values) > MAX_VALUES_SHOWN else ""
        varying.append_text(Text.assemble("  " if n else "", (short_key(key), "bold"), f" {{{shown}{more}}}"))
    shrink = 2 if title else len(items)
    items.append(varying)
    if len(state.seeds) > 1:
        items.append(Text.assemble(("seeds ", "dim"), ", ".join(format_value(s) for s in state.seeds)))
    counts = state.status_counts()
    if counts.get("completed") == len(runs):
        items.append(Text(f"{STATUS_MARKS['completed']} {len(runs)}/{len(runs)} completed",
                          style=STATUS_COLORS["completed"]))
    else:
        items += [Text(f"{STATUS_MARKS.get(status, '?')} {count} {status}", style=STATUS_COLORS.get(status, "dim"))
                  for status, count in sorted(counts.items())]
    return items, shrink


def summary_items(state: CompareState) -> list[Text]:
    """Where the scrubber is, then each shown point's value there: mean ± sd (n seeds)."""
    metric = state.metric
    where = Text.assemble(("@ step ", "dim"), (fmt_int(state.scrub), "bold")) if state.scrub is not None \
        else Text("@ newest", style="dim")
    items = [where]
    for group in state.groups():
        item = Text.assemble(("■ ", state.colour(group[0])), (state.point_label(group[0]) + " ", "dim"))
        for part in range(len(metric.paths)):
            mean, sd, n = state.value(group, part)
            if len(metric.parts) > 1:
                item.append(f"{STYLE_MARKS[2 * part]}{metric.parts[part]} ", style="dim")
            item.append(fmt_num(mean), style="bold")
            if n > 1:
                item.append(f"±{fmt_num(sd)}", style="dim")
            item.append(" ")
        item.rstrip()
        items.append(item)
    return items


class CompareScreen(Screen):
    """Compare mode. The app owns the state and redraws this screen when records arrive."""

    AUTO_FOCUS = None   # keys go to the screen; the filter field takes focus only on `/`
    BINDINGS = [
        *(Binding(str(i + 1), f"metric({i})", "quantity", key_display=f"1-{len(METRICS)}", show=i == 0)
          for i in range(len(METRICS))),
        Binding("m", "cycle_metric(1)", show=False),
        Binding("M", "cycle_metric(-1)", show=False),
        Binding("l", "layer(1)", "layer"),
        Binding("L", "layer(-1)", show=False),
        Binding("v", "vs_param", "vs param"),
        Binding("g", "group_by", "group by"),
        Binding("s", "seeds", "seeds"),
        Binding("up,k", "move(-1)", show=False),
        Binding("down,j", "move(1)", show=False),
        Binding("space", "toggle_shown", "show/hide", key_display="space"),
        Binding("p", "pin", "pin"),
        Binding("slash", "filter", "filter", key_display="/"),
        Binding("left_square_bracket", "scrub(-1)", "scrub all", key_display="[ ]"),
        Binding("right_square_bracket", "scrub(1)", show=False),
        Binding("home", "scrub_to(True)", show=False),
        Binding("end", "scrub_to(False)", show=False),
        Binding("enter", "open_run", "open run"),
        Binding("escape", "close_filter", show=False),
        Binding("question_mark", "help", "help", key_display="?"),
    ]

    def __init__(self, state: CompareState, title: str) -> None:
        super().__init__()
        self.state = state
        self.title_text = title
        self._drawn: tuple | None = None

    def compose(self) -> ComposeResult:
        yield ItemRow(id="cmp-header")
        with Horizontal(id="cmp-body"):
            yield RunsSidebar(id="cmp-runs")
            with ContentSwitcher(initial="cmp-time", id="cmp-views"):
                yield TimePane(id="cmp-time")
                yield VsParamPane(id="cmp-vs")
        yield ItemRow(id="cmp-summary")
        yield Input(placeholder="filter: key=value key>value … (enter applies, empty clears, esc cancels)",
                    id="cmp-filter", compact=True, disabled=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.redraw()

    def on_screen_resume(self) -> None:
        self.redraw(force=True)

    def redraw(self, force: bool = False) -> None:
        """Draw everything from the state, if it changed since the last time."""
        state = self.state
        if not force and self._drawn == (state.version,):
            return
        self._drawn = (state.version,)
        self.query_one("#cmp-header", ItemRow).show(*header_items(state, self.title_text))
        self.query_one(RunsSidebar).show(state)
        self.query_one("#cmp-views", ContentSwitcher).current = "cmp-vs" if state.vs_param else "cmp-time"
        (self.query_one(VsParamPane) if state.vs_param else self.query_one(TimePane)).draw(state)
        self.query_one("#cmp-summary", ItemRow).show(summary_items(state))

    def _changed(self) -> None:
        self.state.touch()
        self.redraw()

    # --- actions --------------------------------------------------------------------------

    def action_metric(self, index: int) -> None:
        self.state.metric_index = index % len(METRICS)
        self._changed()

    def action_cycle_metric(self, step: int) -> None:
        self.action_metric(self.state.metric_index + step)

    def action_layer(self, step: int) -> None:
        if not self.state.metric.per_layer:
            self.notify(f"{self.state.metric.name} has no layers: l chooses the layer of rank and drift")
            return
        self.state.cycle_layer(step)
        self.redraw()

    def action_vs_param(self) -> None:
        self.state.vs_param = not self.state.vs_param
        self._changed()

    def action_group_by(self) -> None:
        if len(self.state.keys) < 2:
            self.notify("only one key varies: nothing else to group by" if self.state.keys
                        else "nothing varies across these runs")
            return
        self.state.rotate_keys()
        self.redraw()

    def action_seeds(self) -> None:
        self.state.show_seeds = not self.state.show_seeds
        self._changed()

    def action_move(self, step: int) -> None:
        rows = self.state.rows()
        self.state.cursor = min(max(self.state.cursor + step, 0), max(len(rows) - 1, 0))
        self._changed()

    def action_toggle_shown(self) -> None:
        index = self.state.selected
        if index is not None:
            self.state.hidden ^= {index}
            self._changed()

    def action_pin(self) -> None:
        index = self.state.selected
        if index is not None:
            self.state.pinned ^= {index}
            self.state.cursor = self.state.rows().index(index)
            self._changed()

    def action_filter(self) -> None:
        field = self.query_one("#cmp-filter", Input)
        field.value = self.state.filter_text
        field.disabled = False
        field.add_class("-open")
        field.focus()

    def action_close_filter(self) -> None:
        field = self.query_one("#cmp-filter", Input)
        field.remove_class("-open")
        field.disabled = True
        self.set_focus(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.state.set_filter(event.value)
        except FilterError as err:
            self.notify(f"filter: {err}", severity="error")
            return
        self.action_close_filter()
        self.redraw()

    def action_scrub(self, step: int) -> None:
        self.state.scrub_by(step)
        self.redraw()

    def action_scrub_to(self, first: bool) -> None:
        self.state.scrub_to(first)
        self.redraw()

    def action_open_run(self) -> None:
        index = self.state.selected
        if index is None:
            return
        if not self.state.runs[index].records:
            self.notify(f"{self.state.runs[index].name}: nothing recorded yet", severity="warning")
            return
        self.app.open_run(index)

    def action_help(self) -> None:
        self.app.push_screen(CompareHelp())
