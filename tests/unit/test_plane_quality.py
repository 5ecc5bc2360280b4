"""The daily report's quality samples come from the media plane's diagnostics: every participant
of every room with a session here, loss as a fraction and round trip in milliseconds."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sfu.diagnostics import ParticipantDiagnostics
from signaling.app import PlaneQuality
from signaling.meeting_log import QualityProbe, QualityReading


def diag(pid: str, loss: float, rtt_s: float | None) -> ParticipantDiagnostics:
    return ParticipantDiagnostics(pid, pid, "connected", "connected", {}, 3e6, loss, rtt_s,
                                  False, None)


class Plane:
    def diagnostics(self, room: str) -> tuple[ParticipantDiagnostics, ...]:
        return {"a": (diag("p1", 0.0, 0.02), diag("p2", 0.08, None)),
                "b": (diag("p3", 0.01, 0.5),)}.get(room, ())


class Sessions:
    def all(self) -> list[Any]:
        return [SimpleNamespace(room_name="b"), SimpleNamespace(room_name="a"),
                SimpleNamespace(room_name=None), SimpleNamespace(room_name="a")]


def test_readings_cover_every_room_with_sessions() -> None:
    probe = PlaneQuality(Plane(), Sessions())  # type: ignore[arg-type]
    assert isinstance(probe, QualityProbe)
    assert probe.quality_readings() == [
        QualityReading("a", "p1", 0.0, 20.0), QualityReading("a", "p2", 0.08, None),
        QualityReading("b", "p3", 0.01, 500.0)]
