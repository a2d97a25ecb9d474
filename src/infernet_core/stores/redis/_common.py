"""What the Redis store and the lease dispatcher share: codecs, key tags, URLs for messages."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ...codec import decode_job, decode_request, encode

__all__ = ("client_tag", "decode_job", "decode_request", "encode", "safe_url", "text")


def safe_url(url: str) -> str:
    """``url`` without its user name and password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparsable url>"


def client_tag(client: str) -> bytes:
    raw = client.encode("utf-8", "surrogatepass")
    return str(len(raw)).encode() + b":" + raw


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
