"""TLS for ``tls://`` sessions and HTTPS pool links: contexts and the client handshake.

Only the standard library's :mod:`ssl` (OpenSSL) is used. Clients always verify
the server: its certificate must chain to the CA file given (``--tls-ca``,
``TETHER_TLS_CA``) or, with none, to the system's trust store, and must name the
host the client dialled (a DNS name or an IP address in its subjectAltName).
There is no switch to turn verification off: a self-signed deployment hands
its CA file to clients instead (``tether up --tls`` does).

Every failure here is a :class:`ConnectError` (client side) or a
:class:`TetherError` (bad files on the server side) whose one line says what
to do.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

from tether._errors import ConnectError, TetherError

__all__ = [
    "CA_ENV",
    "ca_from_env",
    "client_context",
    "server_context",
    "verify_failure",
    "wrap_client",
]

#: The environment variable naming the CA file clients verify servers with.
CA_ENV = "TETHER_TLS_CA"


def ca_from_env() -> str | None:
    """The CA file named by ``TETHER_TLS_CA``, or None (use the system's trust)."""
    return os.environ.get(CA_ENV) or None


def client_context(ca: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A context that verifies servers against ``ca`` (a PEM file) or the system's trust.

    Raises TetherError when the CA file cannot be read or holds no certificate.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=os.fspath(ca))
        except (OSError, ssl.SSLError) as exc:
            raise TetherError(
                f"cannot use the TLS CA file {os.fspath(ca)}: {_why(exc)} "
                f"(--tls-ca / {CA_ENV} must name a PEM file of CA certificates)"
            ) from None
    return ctx


def server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """A server context presenting ``cert`` (PEM chain) with its private ``key``.

    Raises TetherError when either file cannot be read or they do not match.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    for what, path in (("certificate", cert), ("key", key)):
        if not Path(path).is_file():
            raise TetherError(f"the TLS {what} file {os.fspath(path)} does not exist")
    try:
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    except (OSError, ssl.SSLError) as exc:
        raise TetherError(
            f"cannot use the TLS certificate {os.fspath(cert)} with key {os.fspath(key)}: "
            f"{_why(exc)} (both PEM; the key must be the certificate's, unencrypted)"
        ) from None
    return ctx


def wrap_client(
    sock: socket.socket, ctx: ssl.SSLContext, host: str, where: str, *, timeout: float
) -> ssl.SSLSocket:
    """Run the TLS handshake on connected ``sock`` as a client of ``host``.

    Returns the blocking TLS socket. ``where`` names the peer in errors. On any
    failure ``sock`` is closed and ConnectError raised: a certificate that does
    not verify says why and how to fix it; a peer that does not speak TLS, or
    does not answer within ``timeout`` seconds, says so.
    """
    sock.settimeout(timeout)
    try:
        tls = ctx.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise ConnectError(verify_failure(exc, where, host)) from None
    except ssl.SSLError as exc:
        sock.close()
        raise ConnectError(
            f"TLS handshake with {where} failed ({_why(exc)}): is it serving TLS? "
            "(plain acceptors listen on tcp://)"
        ) from None
    except TimeoutError:
        sock.close()
        raise ConnectError(f"{where} did not complete a TLS handshake in {timeout:.0f} s") from None
    except OSError as exc:
        sock.close()
        raise ConnectError(
            f"TLS handshake with {where} failed: {exc.strerror or exc} "
            "(is it serving TLS? plain acceptors listen on tcp://)"
        ) from None
    tls.settimeout(None)
    return tls


#: OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, _EMAIL_MISMATCH and _IP_ADDRESS_MISMATCH.
_NAME_MISMATCH = frozenset({62, 63, 64})


def verify_failure(exc: ssl.SSLCertVerificationError, where: str, host: str) -> str:
    """One line for a certificate that did not verify: why, and what to do."""
    why = (exc.verify_message or _why(exc)).rstrip(".")
    if exc.verify_code in _NAME_MISMATCH:
        return (
            f"the TLS certificate of {where} is not for {host} ({why}): connect by a name "
            "the certificate holds, or give the server a certificate for this name"
        )
    return (
        f"the TLS certificate of {where} is not trusted: {why}; "
        f"give the CA that signed it with --tls-ca FILE or {CA_ENV}"
    )


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
