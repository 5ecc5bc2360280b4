"""The REST API's share of the audit trail: every call that changes something (and every
download of a recording) is one audit entry with who (the account, or the user name a login
tried), what (the handler's name and the path's parameters; never a body, which may hold a
password or a token), when, from where and how it ended (``ok`` or the HTTP status).

Logins and their failures, room and member changes, invitations and tokens issued, moderation
(mute, remove, lock, admit, deny, end, pin) and recordings started, stopped, downloaded and
deleted all pass through here, so one place covers them.
"""

from __future__ import annotations

from aiohttp import web

from signaling.control import ControlPlane
from signaling.store import Account
from signaling.store.journal_models import AuditEntry, Detail

AUDITED_READS = frozenset({"download_file"})
"""GET handlers that are security-relevant acts in themselves."""


def audit_call(control: ControlPlane, method: str, handler: str, request: web.Request,
               account: Account | None, body: object, status: int) -> None:
    if control.journal is None or (method == "GET" and handler not in AUDITED_READS):
        return
    # The same identity as joins and recordings use (``account:<id>``), the name beside it;
    # a login is known by the name it tried (there may be no such account).
    tried = getattr(body, "username", None)
    if account is not None:
        actor, username = f"account:{account.id}", account.username
    elif isinstance(tried, str):
        actor, username = f"login:{tried}", tried
    else:
        actor, username = "anonymous", None
    params = dict(request.match_info)
    room = params.pop("name", "")
    address = request.remote or ""
    outcome = "ok" if status < 400 else str(status)
    now = control.clock()
    target = " ".join(f"{k}={v}" for k, v in sorted(params.items()))
    detail: Detail = {"method": method, "path": request.path[:200], "username": username}
    # Failures can come in floods, and a player fetches a recording in many Range requests:
    # one row per run (see first_of_run).
    if outcome != "ok" or handler in AUDITED_READS:
        write, merged = control.journal.first_of_run(
            (actor, handler, address, outcome, room, target), now)
        if not write:
            return
        if merged:
            detail["repeats_before"] = merged
    control.journal.audit(AuditEntry(
        at=now, actor=actor, action=f"api.{handler}", room=room, target=target,
        address=address, outcome=outcome, detail=detail))
