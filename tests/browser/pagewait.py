"""Waiting for a page condition under the server's Content-Security-Policy.

Playwright's ``wait_for_function`` with a string builds a function inside the page when it has to
poll, which the CSP (``script-src 'self'``, no 'unsafe-eval') forbids. ``page.evaluate`` runs
through the DevTools protocol, which the CSP does not govern, so poll with that instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Error as PlaywrightError

POLL_S = 0.05


async def wait_js(page: Any, expression: str, timeout: float) -> None:
    """Until ``expression`` is truthy in ``page``; ``timeout`` in milliseconds, as Playwright's.

    An expression that throws (``window.diemcau`` not there yet: the app's modules still load on a
    busy machine) is "not yet", like a falsy one; the last error is named at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout / 1000
    last_error = ""
    while True:
        try:
            if await page.evaluate(expression):
                return
        except PlaywrightError as exc:
            if "Target page, context or browser has been closed" in str(exc):
                raise
            last_error = str(exc).splitlines()[0]
        if loop.time() > deadline:
            raise TimeoutError(f"{expression!r} not true within {timeout / 1000:g} s"
                               + (f" (last error: {last_error})" if last_error else ""))
        await asyncio.sleep(POLL_S)
