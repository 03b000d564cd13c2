"""The progress record of one model switch, shown to admins while it runs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from chatgate.db.models import utcnow

SwitchPhase = Literal["draining", "stopping", "starting", "ready", "failed", "rolled_back"]
FINISHED_PHASES = frozenset({"ready", "failed", "rolled_back"})
MAX_LOG_LINES = 200  # a stuck start logs progress every few seconds: keep the tail only


@dataclass
class SwitchStatus:
    target: str
    previous: str | None
    drain_seconds: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    phase: SwitchPhase = "draining"
    message: str = ""
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    log: list[tuple[datetime, str]] = field(default_factory=list)
    # Called after every change: the fleet leader publishes the progress to the followers.
    on_change: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES

    def note(self, message: str) -> None:
        self.message = message
        self.log.append((utcnow(), message))
        del self.log[:-MAX_LOG_LINES]
        if self.on_change is not None:
            self.on_change()

    def enter(self, phase: SwitchPhase, message: str) -> None:
        self.phase = phase
        if phase in FINISHED_PHASES:
            self.finished_at = utcnow()
        self.note(message)

    @classmethod
    def from_public(cls, data: dict[str, Any]) -> SwitchStatus:
        """The status another replica published (``public()``), to show or to finish."""
        finished = data.get("finished_at")
        return cls(
            target=str(data["target"]),
            previous=data.get("previous"),
            drain_seconds=float(data.get("drain_seconds") or 0.0),
            id=str(data["id"]),
            phase=cast(SwitchPhase, data.get("phase", "draining")),
            message=str(data.get("message", "")),
            started_at=datetime.fromisoformat(data["started_at"]),
            finished_at=datetime.fromisoformat(finished) if finished else None,
            log=[(datetime.fromisoformat(e["at"]), str(e["message"])) for e in data.get("log", [])],
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "previous": self.previous,
            "phase": self.phase,
            "message": self.message,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "drain_seconds": self.drain_seconds,
            "log": [{"at": at.isoformat(), "message": text} for at, text in self.log],
        }
