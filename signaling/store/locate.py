"""Where the store lives: the data directory's SQLite file (the default) or a PostgreSQL URL
(``--store``, issue 14). Pure: no driver is imported here, so settings can be checked without
one and a SQLite-only server never loads psycopg."""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qs, urlsplit

PG_SCHEMES = ("postgresql", "postgres")


def check_store_url(url: str) -> str:
    """``url`` if it names a PostgreSQL database; ``ValueError`` saying what is wrong if not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in PG_SCHEMES:
        shown = parts.scheme or "none"
        raise ValueError(f"scheme {shown!r} is not supported: give postgresql://user@host:port/db "
                         "(leave the setting out for the data directory's SQLite file)")
    query = parse_qs(parts.query)
    if not (parts.hostname or "host" in query):
        raise ValueError("no host: give postgresql://user@host:port/db (or ?host=/socket/dir)")
    if not parts.path.strip("/") and "dbname" not in query:
        raise ValueError("no database name: give postgresql://user@host:port/db")
    if port == 0:
        raise ValueError("port 0 is not a port")
    return url


def redact(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rpartition("@")
        user = netloc[0].partition(":")[0]
        return SplitResult(parts.scheme, f"{user}:***@{netloc[2]}", parts.path, parts.query,
                           parts.fragment).geturl()
    except ValueError:
        return "(unparsable URL)"
