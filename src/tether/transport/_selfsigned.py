"""A private CA and a server certificate signed by it, made with the ``openssl`` command.

``tether up --tls`` uses it for a one-host pool; tests and the transport
benchmark use it for throw-away certificates. Tether does not depend on the
``cryptography`` package, and writing certificates by hand is exactly the
home-made crypto to avoid, so the system's ``openssl`` does the work.

Why a CA and a leaf rather than one self-signed certificate: clients trust the
CA file, and a CA with proper extensions is accepted by every OpenSSL
verification mode (strict X.509 checking included), where a self-signed leaf
is not. The CA's key is deleted once it has signed, unless asked to keep it:
nobody can then sign another certificate that these clients would trust.

The same by hand (``HOSTS`` as ``DNS:name,IP:addr``)::

    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \\
        -keyout ca.key -out ca.crt -days 3650 -subj "/CN=Tether CA" \\
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \\
        -keyout server.key -out server.csr -subj "/CN=HOST"
    printf 'basicConstraints=critical,CA:FALSE\\nextendedKeyUsage=serverAuth\\n\\
    subjectAltName=HOSTS\\n' > ext.cnf
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial 0x$RANDOM \\
        -days 825 -extfile ext.cnf -out server.crt
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tether._errors import TetherError

__all__ = ["SelfSigned", "make_self_signed"]

_TIMEOUT_S = 60.0
_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True, slots=True)
class SelfSigned:
    """Paths of what :func:`make_self_signed` wrote."""

    ca: Path  # give this to clients (--tls-ca, TETHER_TLS_CA)
    cert: Path  # the server's certificate (--tls-cert)
    key: Path  # the server's private key, mode 0600 (--tls-key)


def make_self_signed(
    directory: Path,
    *,
    hosts: Sequence[str],
    ca_name: str = "Tether CA",
    keep_ca_key: bool = False,
    days: int = 825,
) -> SelfSigned:
    """Write ``ca.crt``, ``server.crt`` and ``server.key`` into ``directory``.

    The server certificate names every entry of ``hosts`` (names and IP
    addresses). Raises TetherError when ``openssl`` is missing or fails; the
    message says how to make the files by hand.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TetherError(
            "making a certificate needs the openssl command (apt-get install openssl), or make "
            "one yourself: see docs/security.md, section TLS"
        )
    if not hosts:
        raise TetherError("a server certificate must name at least one host")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key, ca = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(_san(h) for h in hosts)}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    old_umask = os.umask(0o077)  # private keys are born unreadable to others
    try:
        ca_args = ["-days", str(days + 365), "-subj", f"/CN={ca_name}"]
        for extension in (
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,cRLSign",
            "subjectKeyIdentifier=hash",
        ):
            ca_args += ["-addext", extension]
        _run([openssl, "req", "-x509", *_CURVE, "-keyout", str(ca_key), "-out", str(ca), *ca_args])
        subject = f"/CN={hosts[0]}"
        _run(
            [
                openssl,
                "req",
                "-new",
                *_CURVE,
                "-keyout",
                str(key),
                "-out",
                str(csr),
                "-subj",
                subject,
            ]
        )
        serial = "0x" + secrets.token_hex(16)
        _run(
            [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-set_serial", serial, "-days", str(days), "-extfile", str(ext), "-out", str(cert)]
        )  # fmt: skip
    finally:
        os.umask(old_umask)
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)
        if not keep_ca_key:
            ca_key.unlink(missing_ok=True)
    for public in (ca, cert):
        public.chmod(0o644)
    return SelfSigned(ca=ca, cert=cert, key=key)


def _san(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"DNS:{host}"
    return f"IP:{host}"


def _run(argv: list[str]) -> None:
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TetherError(f"openssl failed to run: {exc}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise TetherError(f"openssl {argv[1]} failed: {' '.join(tail)}")
