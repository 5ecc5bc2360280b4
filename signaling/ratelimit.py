"""Token buckets against brute force: login, password and join attempts, per account and per
address. Pure: time is passed in, nothing here sleeps or reads a clock.

Callers take a token for an attempt before checking the credentials and refund it when the
attempt succeeds, so only failures drain a bucket: a meeting room full of people behind one
office NAT joining at 9:00 is never throttled, while the 6th wrong password for an account within
a minute is. Taking first (rather than charging after a failure) also counts attempts still in
flight: a hundred guesses sent at once cannot all slip past while the hashes run.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

LOGIN_ACCOUNT = "login-account"
LOGIN_ADDRESS = "login-address"
PASSWORD_ACCOUNT = "password-account"
PASSWORD_ADDRESS = "password-address"
JOIN_ADDRESS = "join-address"
JOIN_SOCKET = "join-socket"


@dataclass(frozen=True)
class Rate:
    """``burst`` attempts at once, then one more each ``every_s`` seconds."""

    burst: int
    every_s: float

    @property
    def per_s(self) -> float:
        return 1.0 / self.every_s


DEFAULT_RATES: Mapping[str, Rate] = {
    # 5 failures, then one a minute: the 6th wrong password within a minute is refused, and a
    # guesser gets ~1,400 tries a day per account instead of millions.
    LOGIN_ACCOUNT: Rate(5, 60.0),
    PASSWORD_ACCOUNT: Rate(5, 60.0),
    # One address may be an office NAT with many honest users mistyping: more room.
    LOGIN_ADDRESS: Rate(20, 3.0),
    PASSWORD_ADDRESS: Rate(20, 3.0),
    # Join attempts that fail to authenticate from one address (no credentials, bad tokens,
    # bad invitation links: a guessing script, a flood, a broken client).
    JOIN_ADDRESS: Rate(30, 2.0),
    # Every join attempt on one WebSocket, successful or not: an honest client joins once and
    # perhaps retries a mistyped password; a flood on one socket is cut off early.
    JOIN_SOCKET: Rate(5, 5.0),
}

Key = tuple[str, str]


def address_key(address: str) -> str:
    """The rate-limit key of a client address: an IPv6 client owns its whole /64, so one
    bucket per /64, or a guesser would rotate through addresses for free."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def account_key(account: str, address: str) -> str:
    """Failed passwords count per account AND address: keyed by the account alone, anyone
    could lock anyone out by failing on purpose; this way the owner's right password from
    their own address still gets through while the guesser's address is throttled."""
    return f"{account}\n{address_key(address)}"
EPSILON = 1e-9
"""Refill sums floats: a bucket due to hold exactly one token may hold 0.9999999999999987."""


class RateLimiter:
    def __init__(self, rates: Mapping[str, Rate] = DEFAULT_RATES,
                 max_keys: int = 100_000) -> None:
        self.rates = dict(rates)
        self.max_keys = max_keys
        self._buckets: dict[Key, tuple[float, float]] = {}  # key -> (tokens, at)

    def _tokens(self, key: Key, now: float) -> float:
        rate = self.rates[key[0]]
        tokens, at = self._buckets.get(key, (float(rate.burst), now))
        return min(float(rate.burst), tokens + max(0.0, now - at) * rate.per_s)

    def _wait(self, key: Key, tokens: float) -> float:
        return (1.0 - tokens) / self.rates[key[0]].per_s

    def retry_after(self, kind: str, key: str, now: float) -> float:
        """0 if an attempt is allowed now, else the seconds until one is."""
        tokens = self._tokens((kind, key), now)
        return 0.0 if tokens >= 1.0 - EPSILON else self._wait((kind, key), tokens)

    def take(self, kind: str, key: str, now: float) -> float:
        """Spend a token for one attempt: 0 if allowed, else seconds to wait (nothing spent)."""
        return self.take_all([(kind, key)], now)

    def take_all(self, keys: Iterable[Key], now: float) -> float:
        """All or nothing: spend one token from each bucket, or none if any is empty (then the
        longest wait is returned)."""
        keys = list(keys)
        levels = [self._tokens(key, now) for key in keys]
        waits = [self._wait(key, level) for key, level in zip(keys, levels, strict=True)
                 if level < 1.0 - EPSILON]
        if waits:
            return max(waits)
        for key, level in zip(keys, levels, strict=True):
            self._set(key, max(0.0, level - 1.0), now)
        return 0.0

    def refund(self, kind: str, key: str, now: float) -> None:
        self.refund_all([(kind, key)], now)

    def refund_all(self, keys: Iterable[Key], now: float) -> None:
        """Give back the tokens of an attempt that succeeded."""
        for key in keys:
            self._set(key, self._tokens(key, now) + 1.0, now)

    def _set(self, key: Key, tokens: float, now: float) -> None:
        if tokens >= self.rates[key[0]].burst - EPSILON:
            self._buckets.pop(key, None)  # a full bucket is the default: keep nothing
            return
        self._buckets.pop(key, None)  # re-insert: the dict's order is then least recent first
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self.prune(now)

    def prune(self, now: float) -> None:
        """Forget refilled buckets; if still too many, the least recently used (bounded memory
        against a flood of addresses, at the cost of forgetting the oldest of them)."""
        full = [k for k in self._buckets
                if self._tokens(k, now) >= self.rates[k[0]].burst - EPSILON]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)
