"""Waiting for a page condition under the server's Content-Security-Policy.

Playwright's ``wait_for_function`` with a string builds a function inside the page when it has to
poll, which the CSP (``script-src 'self'``, no 'unsafe-eval') forbids. ``page.evaluate`` runs
through the DevTools protocol, which the CSP does not govern, so poll with that instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

POLL_S = 0.05


async def wait_js(page: Any, expression: str, timeout: float) -> None:
    """Until ``expression`` is truthy in ``page``; ``timeout`` in milliseconds, as Playwright's."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout / 1000
    while not await page.evaluate(expression):
        if loop.time() > deadline:
            raise TimeoutError(f"{expression!r} not true within {timeout / 1000:g} s")
        await asyncio.sleep(POLL_S)
