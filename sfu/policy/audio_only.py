"""The 2 Mbps rule: below it a participant carries on with sound only (pure, time passed in).

Entering is quick (the estimate must stay below the threshold for ``enter_after_s``, so one bad
sample does not blank everyone's video); leaving is slow (above threshold x ``recover_factor``
for ``recover_after_s``), so a link near the limit does not flap between video and sound.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_THRESHOLD_BPS = 2_000_000
CONGESTED_BELOW_SENT = 0.8
"""An estimate under 80 % of what is sent is a measured limit, not an idle receiver (both the
downlink and the uplink read a low estimate this way before the gate may count it)."""


@dataclass
class AudioOnlyGate:
    threshold_bps: int = DEFAULT_THRESHOLD_BPS
    recover_factor: float = 1.25
    enter_after_s: float = 0.25
    recover_after_s: float = 5.0
    audio_only: bool = False
    entered_at: float | None = None
    _below_since: float | None = None
    _above_since: float | None = None

    @property
    def recover_bps(self) -> int:
        return int(self.threshold_bps * self.recover_factor)

    def update(self, estimate_bps: float | None, now: float, congested: bool = True) -> bool:
        """Feed the latest estimate; returns True when the audio-only state changed.

        ``congested`` says the estimate is a measurement of the link (it fell below what we
        send, or a probe failed) rather than a receiver that simply got little: only then does
        a low estimate start the clock. Once started, the clock runs while the estimate stays
        low, even if we meanwhile send less (we do: the allocator lowers layers at once).
        """
        if estimate_bps is None:
            return False
        if not self.audio_only:
            if estimate_bps >= self.threshold_bps:
                self._below_since = None
                return False
            if self._below_since is None:
                if not congested:
                    return False
                self._below_since = now
            if now - self._below_since < self.enter_after_s:
                return False
            self.audio_only = True
            self.entered_at = now
            self._above_since = None
            return True
        if estimate_bps < self.recover_bps:
            self._above_since = None
            return False
        if self._above_since is None:
            self._above_since = now
        if now - self._above_since < self.recover_after_s:
            return False
        self.audio_only = False
        self._below_since = None
        return True
