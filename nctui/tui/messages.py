"""Every message the app posts to itself, as dataclasses (the workers only post these)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from nctui.records import Record


@dataclass
class RecordArrived(Message):
    """A start, eval, snapshot or end record from the feed (never coalesced)."""

    record: Record


@dataclass
class StepsArrived(Message):
    """Step records are waiting in the app's deque (at most one such notice is pending)."""


@dataclass
class FeedDone(Message):
    """The feed returned (error None) or raised (error says how)."""

    error: BaseException | None


@dataclass
class RunUpdate:
    """What changed in one run of compare mode since the last poll (not a message itself)."""

    index: int                 # the run's position in the compared runs
    records: list[Record]      # appended since the last poll, in order
    status: str                # completed | stopped | diverged | failed | running | unfinished | pending
    config: dict | None = None  # the run's config, once a pending sweep point has started


@dataclass
class RunsPolled(Message):
    """Compare mode's poller read the runs' directories: the runs that changed."""

    updates: list[RunUpdate]
