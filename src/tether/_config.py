"""The user's Tether configuration file: where the pool is, and the token to use.

The file is TOML at ``$TETHER_CONFIG`` if set, else ``$XDG_CONFIG_HOME/tether/config.toml``,
else ``~/.config/tether/config.toml``. Only the ``[pool]`` table is read here::

    [pool]
    url = "https://pool.example.org:8600"
    token = "tether_..."            # or: token_file = "/path/to/file"
    ca = "/path/to/ca.crt"          # optional: the CA that signed an https pool's
                                    # (and its acceptors') certificates

Precedence, highest first: command-line flag, environment (``TETHER_POOL``;
``TETHER_POOL_TOKEN``, then ``TETHER_POOL_TOKEN_FILE``; ``TETHER_TLS_CA``),
then this file. A token is never needed on a command line: a file or the
environment will do. :func:`write_pool` is what ``tether up``
uses to record a freshly started local pool; it writes the file with mode 0600
because it holds a secret.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tether._errors import ConfigError

__all__ = [
    "PoolConfig",
    "config_path",
    "pool_url",
    "read_token_file",
    "require_pool",
    "resolve_pool",
    "write_pool",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolConfig:
    """Where the pool is and how to authenticate; either may be ``None`` (not configured)."""

    url: str | None
    token: str | None
    ca: str | None = None  # CA file for https:// and tls:// (None: the system's trust)


def config_path() -> Path:
    """The path of the configuration file, whether or not it exists."""
    explicit = os.environ.get("TETHER_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tether" / "config.toml"


def _read_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the Tether config file {path}: {exc}") from exc
    pool = data.get("pool", {})
    if not isinstance(pool, dict):
        raise ConfigError(f"{path}: [pool] must be a table")
    return pool


def read_token_file(path: str | os.PathLike[str], what: str = "token file") -> str:
    """The token in ``path`` (surrounding whitespace dropped); ConfigError if
    it cannot be read or is empty."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {os.fspath(path)}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"the {what} {os.fspath(path)} is empty")
    return token


def resolve_pool(
    url: str | None = None,
    token: str | None = None,
    *,
    token_file: str | os.PathLike[str] | None = None,
    ca: str | os.PathLike[str] | None = None,
) -> PoolConfig:
    """Combine flags (the arguments), environment and config file, in that order.

    Raises :class:`ConfigError` when the config file exists but cannot be
    parsed, or a token file named anywhere cannot be read.
    """
    if token is None and token_file is not None:
        token = read_token_file(token_file)
    env_url = os.environ.get("TETHER_POOL") or None
    env_token = os.environ.get("TETHER_POOL_TOKEN") or None
    if not env_token and os.environ.get("TETHER_POOL_TOKEN_FILE"):
        env_token = read_token_file(os.environ["TETHER_POOL_TOKEN_FILE"], "TETHER_POOL_TOKEN_FILE")
    env_ca = os.environ.get("TETHER_TLS_CA") or None
    the_ca = os.fspath(ca) if ca is not None else env_ca
    if (url or env_url) and (token or env_token):
        return PoolConfig(url=url or env_url, token=token or env_token, ca=the_ca)
    section = _read_file(config_path())
    file_url = section.get("url")
    file_token = section.get("token")
    if not isinstance(file_token, str) and isinstance(section.get("token_file"), str):
        file_token = read_token_file(str(section["token_file"]), f"token_file of {config_path()}")
    file_ca = section.get("ca")
    return PoolConfig(
        url=url or env_url or (file_url if isinstance(file_url, str) else None),
        token=token or env_token or (file_token if isinstance(file_token, str) else None),
        ca=the_ca or (file_ca if isinstance(file_ca, str) else None),
    )


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def write_pool(url: str, token: str, path: Path | None = None, *, ca: Path | None = None) -> Path:
    """Record the pool URL, token and CA file in the config file (other tables are kept).

    The file is rewritten whole with mode 0600. Returns the path written.
    """
    target = path or config_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    kept: list[str] = []
    if target.exists():
        # Keep every line outside the [pool] table, so other settings survive.
        in_pool = False
        for line in target.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("[") and stripped.endswith("]"):
                in_pool = stripped == "[pool]"
            if not in_pool:
                kept.append(line)
    body = "\n".join(kept).strip()
    text = (body + "\n\n" if body else "") + (
        f"[pool]\nurl = {_toml_string(url)}\ntoken = {_toml_string(token)}\n"
    )
    if ca is not None:
        text += f"ca = {_toml_string(str(ca))}\n"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(target, 0o600)
    return target


def pool_url(url: str) -> str:
    """``url`` as the pool's base URL: http(s)://HOST:PORT, or HOST:PORT (then http).

    Raises :class:`ConfigError` for any other scheme (``tcp://`` is an acceptor's
    address, not a pool's), instead of trying ``http://tcp://...``.
    """
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "http://" + url
    if scheme.lower() not in ("http", "https") or not rest.strip("/"):
        hint = ""
        if scheme.lower() in ("tcp", "tls", "unix"):
            hint = f" ({scheme}:// is an acceptor's address: give it to `tether run --connect`)"
        raise ConfigError(
            f"the pool's URL must be http://HOST:PORT or https://HOST:PORT, not {url!r}{hint}; "
            "check --pool, TETHER_POOL or the config file"
        )
    return url


def require_pool(
    url: str | None = None,
    token: str | None = None,
    *,
    token_file: str | os.PathLike[str] | None = None,
    ca: str | os.PathLike[str] | None = None,
    how: str = "pass --pool URL and --token-file PATH",
) -> PoolConfig:
    """:func:`resolve_pool`, with the URL checked (:func:`pool_url`) and both URL and
    token required: :class:`ConfigError` naming what is missing and where it may come
    from (``how`` says how the caller's own arguments give it)."""
    cfg = resolve_pool(url, token, token_file=token_file, ca=ca)
    if not cfg.url or not cfg.token:
        missing = "pool URL (--pool, $TETHER_POOL)" if not cfg.url else "API token"
        raise ConfigError(
            f"no {missing}: {how}, set TETHER_POOL and TETHER_POOL_TOKEN, or put them "
            f"under [pool] in {config_path()} (`tether up` does)"
        )
    return PoolConfig(url=pool_url(cfg.url), token=cfg.token, ca=cfg.ca)
