"""Reaching a Redis server: the store URL, its password, timeouts, and Redis client
errors turned into one-line messages."""

from __future__ import annotations

import functools
import os
import urllib.parse

from engine.errors import BadStoreURL, IndexFileError
from engine.names import printable

DEFAULT_PORT = 6379


def parse_url(url: str) -> tuple[dict, str, str]:
    """Connection keywords for redis-py, the index name, and the URL without password
    (with its ``features=0`` where given).

    Refuses anything it cannot use with a one-line :class:`IndexFileError`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise BadStoreURL(f"not a Redis URL: {printable(url)}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise BadStoreURL(f"bad port in {printable(_withoutpassword_from_file(url))}") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise BadStoreURL(f"the database in a Redis URL is a number, not {printable(path)!r}")
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    name = (query.get("name") or ["default"])[0]
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise BadStoreURL(
            f"index name {printable(name)!r}: use letters, digits, '-', '_' or '.' (64 at most)"
        )
    password = urllib.parse.unquote(parts.password) if parts.password else None
    kwargs = {
        "host": parts.hostname or "127.0.0.1",
        "port": port,
        "db": int(path or 0),
        "password": password or password_from_file((query.get("password_file") or [""])[0]),
        "username": urllib.parse.unquote(parts.username) if parts.username else None,
        "ssl": parts.scheme == "rediss",
        "socket_connect_timeout": 5.0,
        "socket_timeout": reply_timeout(),
        "health_check_interval": 30,
    }
    host = kwargs["host"]
    location = f"{parts.scheme}://{host}:{port}/{kwargs['db']}?name={name}"
    if not keeps_features(url):
        location += "&features=0"
    return kwargs, name, location


def password_from_file(path: str) -> str | None:
    """The password when the URL holds none: from ``password_file=PATH`` in the URL or
    ``LOOKALIKE_REDIS_PASSWORD_FILE`` (the file's first line), else
    ``LOOKALIKE_REDIS_PASSWORD``. A password in the URL itself shows in ``ps`` when the
    URL is given as ``--store``; these do not."""
    path = path or os.environ.get("LOOKALIKE_REDIS_PASSWORD_FILE", "")
    if path:
        try:
            with open(os.path.expanduser(path), encoding="utf-8") as fh:
                return fh.readline().rstrip("\r\n") or None
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise IndexFileError(
                f"cannot read the Redis password file {printable(path)}: {why}"
            ) from None
    return os.environ.get("LOOKALIKE_REDIS_PASSWORD") or None


def keeps_features(url: str) -> bool:
    """Whether a new index at *url* stores the backbone's pooled features (``features=0``
    in the URL: no, for a little under half the memory; see docs/INDEX-FORMAT.md)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return (query.get("features") or ["1"])[0].lower() not in ("0", "no", "off", "false")


def reply_timeout() -> float:
    """Seconds to wait for a Redis reply before the server counts as gone
    (``LOOKALIKE_REDIS_TIMEOUT``, default 30)."""
    try:
        return max(float(os.environ.get("LOOKALIKE_REDIS_TIMEOUT") or 30.0), 0.1)
    except ValueError:
        return 30.0


def _withoutpassword_from_file(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def translate(location: str, exc: Exception) -> IndexFileError | None:
    """The one-line error for a Redis client error (None: not one of those)."""
    import redis

    if isinstance(exc, redis.exceptions.AuthenticationError):
        return IndexFileError(f"Redis at {location} refused the password (wrong or missing)")
    if isinstance(exc, redis.exceptions.ResponseError):
        text = str(exc)
        if "NOAUTH" in text or "WRONGPASS" in text or "invalid password" in text:
            return IndexFileError(f"Redis at {location} refused the password (wrong or missing)")
        if "OOM" in text:
            return IndexFileError(
                f"Redis at {location} is out of memory (maxmemory): nothing more can be stored"
            )
        return IndexFileError(f"Redis at {location}: {printable(text)[:200]}")
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        why = printable(str(exc).split("\n")[0])[:160] or type(exc).__name__
        return IndexFileError(
            f"lost or could not make the connection to Redis at {location} ({why});"
            " everything committed is kept"
        )
    if isinstance(exc, redis.exceptions.RedisError):
        return IndexFileError(f"Redis at {location}: {printable(str(exc))[:200]}")
    return None


def guarded(method):
    """Turn Redis client errors raised in *method* into one-line
    :class:`IndexFileError`s (its object has ``errors()``, as the store and a job do)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.errors():
            return method(self, *args, **kwargs)

    return wrapper


def pool_kwargs(kwargs: dict) -> dict:
    out = dict(kwargs)
    if out.pop("ssl", False):
        import redis

        out["connection_class"] = redis.SSLConnection
    return out


def glob_escape(raw: bytes) -> bytes:
    out = bytearray()
    for c in raw:
        if c in b"*?[]\\":
            out += b"\\"
        out.append(c)
    return bytes(out)


def remove_all(url: str) -> None:
    """Delete the index at *url* whole (``--rebuild`` of one too old or damaged to open)."""
    import redis

    kwargs, name, location = parse_url(url)
    r = redis.Redis(**pool_kwargs(kwargs))
    prefix = f"lookalike:{name}:".encode()
    try:
        unlink_matching(r, prefix)
    except redis.exceptions.RedisError as exc:
        raise IndexFileError(f"Redis at {location}: {printable(str(exc))[:200]}") from None
    finally:
        r.close()


def unlink_matching(r, prefix: bytes) -> None:
    """UNLINK every key starting with *prefix*, in batches (SCAN, never KEYS)."""
    batch = []
    for key in r.scan_iter(match=glob_escape(prefix) + b"*", count=10000):
        batch.append(key)
        if len(batch) >= 5000:
            r.unlink(*batch)
            batch = []
    if batch:
        r.unlink(*batch)
