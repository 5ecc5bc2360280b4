"""The delay-based half of the send-side estimator: packets cut into send groups, and the
trend of their queuing delay against an adaptive threshold (overuse, normal, underuse). Pure:
times are passed in. ``sfu.policy.bwe`` builds the estimate on it."""

from __future__ import annotations

from collections import deque

NORMAL = "normal"
OVERUSING = "overusing"
UNDERUSING = "underusing"

_GROUP_S = 0.005  # packets sent this close together are one group (a frame, a pacer burst)
_BURST_S = 0.005
_MAX_BURST_S = 0.1


class _InterArrival:
    """Cuts packets (in arrival order) into send groups; returns deltas between completed groups."""

    __slots__ = (
        "_first_send",
        "_last_send",
        "_first_arrival",
        "_last_arrival",
        "_prev_send",
        "_prev_arrival",
    )

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._first_send: float | None = None
        self._last_send = 0.0
        self._first_arrival = 0.0
        self._last_arrival = 0.0
        self._prev_send: float | None = None
        self._prev_arrival = 0.0

    def add(self, send_s: float, arrival_s: float) -> tuple[float, float, float] | None:
        """(send delta, arrival delta, arrival time), in s, when ``send_s`` opens a new group."""
        if self._first_send is None:
            self._start(send_s, arrival_s)
            return None
        if send_s < self._first_send:
            return None  # reordered across groups: its delay says nothing reliable
        if self._in_group(send_s, arrival_s):
            self._last_send = max(self._last_send, send_s)
            self._last_arrival = max(self._last_arrival, arrival_s)
            return None
        result = None
        if self._prev_send is not None:
            send_delta = self._last_send - self._prev_send
            arrival_delta = self._last_arrival - self._prev_arrival
            if arrival_delta - send_delta > 3.0 or arrival_delta < 0:
                # The receiver's clock jumped (or groups arrived reordered): start over.
                self.reset()
                self._start(send_s, arrival_s)
                return None
            result = (send_delta, arrival_delta, self._last_arrival)
        self._prev_send = self._last_send
        self._prev_arrival = self._last_arrival
        self._start(send_s, arrival_s)
        return result

    def _start(self, send_s: float, arrival_s: float) -> None:
        self._first_send = self._last_send = send_s
        self._first_arrival = self._last_arrival = arrival_s

    def _in_group(self, send_s: float, arrival_s: float) -> bool:
        assert self._first_send is not None
        # A burst: packets that arrive back to back faster than they were sent were queued
        # together behind something; splitting them would read queue drain as delay change.
        arrival_delta = arrival_s - self._last_arrival
        send_delta = send_s - self._last_send
        if send_delta == 0:
            return True
        if (
            arrival_delta - send_delta < 0
            and arrival_delta <= _BURST_S
            and arrival_s - self._first_arrival < _MAX_BURST_S
        ):
            return True
        return send_s - self._first_send <= _GROUP_S


class _Trendline:
    """Least-squares slope of the smoothed accumulated delay, against an adaptive threshold."""

    WINDOW = 20
    SMOOTHING = 0.9
    GAIN = 4.0
    K_UP = 0.0087  # the threshold rises slowly (so real overuse is not masked) ...
    K_DOWN = 0.039  # ... and falls fast (so detection stays sensitive after jitter passes)

    __slots__ = (
        "_x",
        "_y",
        "_first_ms",
        "_accumulated",
        "_smoothed",
        "_deltas",
        "_threshold",
        "_last_threshold_ms",
        "_over_ms",
        "_over_count",
        "_prev_trend",
        "state",
    )

    def __init__(self) -> None:
        self._x: deque[float] = deque(maxlen=self.WINDOW)
        self._y: deque[float] = deque(maxlen=self.WINDOW)
        self._first_ms: float | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._deltas = 0
        self._threshold = 12.5
        self._last_threshold_ms: float | None = None
        self._over_ms = -1.0
        self._over_count = 0
        self._prev_trend = 0.0
        self.state = NORMAL

    def update(self, send_delta_s: float, arrival_delta_s: float, arrival_s: float) -> str:
        send_delta_ms = send_delta_s * 1000
        arrival_ms = arrival_s * 1000
        self._deltas = min(self._deltas + 1, 1000)
        self._accumulated += (arrival_delta_s - send_delta_s) * 1000
        self._smoothed = self.SMOOTHING * self._smoothed + (1 - self.SMOOTHING) * self._accumulated
        if self._first_ms is None:
            self._first_ms = arrival_ms
        self._x.append(arrival_ms - self._first_ms)
        self._y.append(self._smoothed)
        trend = self._prev_trend
        if len(self._x) == self.WINDOW:
            slope = _slope(self._x, self._y)
            if slope is not None:
                trend = slope
        self._detect(trend, send_delta_ms, arrival_ms)
        return self.state

    def _detect(self, trend: float, send_delta_ms: float, now_ms: float) -> None:
        if self._deltas < 2:
            self.state = NORMAL
            return
        # Scaled by the sample count so that a young, noisy fit weighs less.
        modified = min(self._deltas, 60) * trend * self.GAIN
        if modified > self._threshold:
            if self._over_ms < 0:
                self._over_ms = send_delta_ms / 2
            else:
                self._over_ms += send_delta_ms
            self._over_count += 1
            # Overuse must last a little (10 ms, two groups) and not be already receding.
            if self._over_ms > 10 and self._over_count > 1 and trend >= self._prev_trend:
                self._over_ms = 0.0
                self._over_count = 0
                self.state = OVERUSING
        elif modified < -self._threshold:
            self._over_ms = -1.0
            self._over_count = 0
            self.state = UNDERUSING
        else:
            self._over_ms = -1.0
            self._over_count = 0
            self.state = NORMAL
        self._prev_trend = trend
        self._adapt_threshold(modified, now_ms)

    def _adapt_threshold(self, modified: float, now_ms: float) -> None:
        if self._last_threshold_ms is None:
            self._last_threshold_ms = now_ms
        size = abs(modified)
        if size > self._threshold + 15:
            # A spike (e.g. a route change) should not drag the threshold up.
            self._last_threshold_ms = now_ms
            return
        k = self.K_DOWN if size < self._threshold else self.K_UP
        dt = min(max(now_ms - self._last_threshold_ms, 0.0), 100.0)
        self._threshold = min(max(self._threshold + k * (size - self._threshold) * dt, 6.0), 600.0)
        self._last_threshold_ms = now_ms


def _slope(xs: deque[float], ys: deque[float]) -> float | None:
    n = len(xs)
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    num = 0.0
    den = 0.0
    for x, y in zip(xs, ys, strict=True):
        dx = x - mean_x
        num += dx * (y - mean_y)
        den += dx * dx
    return num / den if den else None
