"""A throwaway CA for TLS tests, made with the ``openssl`` command line (no Python dependency).

``Pki(dir)`` creates a CA (EC P-256, valid two days); :meth:`Pki.issue` signs server or
client certificates for chosen names, or already expired ones. :func:`tls_listener` gives
the mosquitto config lines of a TLS listener using them.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl") or "openssl"


def _run(*args: str, cwd: Path) -> None:
    done = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr.strip()}")


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class Pki:
    def __init__(self, directory: Path, name: str = "edge-agent test CA") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        stem = name.replace(" ", "-")
        self.cert = self.dir / f"{stem}.pem"
        self.key = self.dir / f"{stem}.key"
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(self.key), "-out", str(self.cert), "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)

    def issue(self, name: str, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), *,
              client: bool = False, expired: bool = False) -> Issued:
        """A certificate for ``hosts`` (IPs or DNS names) signed by this CA.

        ``expired``: valid until yesterday (OpenSSL sets notAfter = now - 1 day).
        """
        key, csr, cert, ext = (self.dir / f"{name}{s}" for s in (".key", ".csr", ".pem", ".ext"))
        sans = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
                       + (f"subjectAltName={sans}\n" if sans and not client else ""))
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
             "-out", str(csr), "-subj", f"/CN={hosts[0] if hosts and not client else name}", cwd=self.dir)
        _run("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
             "-CAcreateserial", "-out", str(cert), "-days", "-1" if expired else "2", "-extfile", str(ext),
             cwd=self.dir)
        return Issued(cert, key)


def tls_listener(port: int, server: Issued, client_ca: Path | None = None, *, require_certificate: bool = False,
                 host: str = "127.0.0.1") -> str:
    """mosquitto.conf lines for a TLS listener; ``require_certificate`` makes it mutual TLS."""
    lines = [f"listener {port} {host}", f"certfile {server.cert}", f"keyfile {server.key}"]
    if client_ca is not None:
        lines.append(f"cafile {client_ca}")
    if require_certificate:
        lines.append("require_certificate true")
    return "\n".join(lines)
