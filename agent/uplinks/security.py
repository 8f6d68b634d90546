"""Credentials and TLS for an uplink, and the words a technician reads when connecting fails.

The password comes from ``password_file`` or ``password_env`` and goes only to the MQTT
client: it is never logged or printed. Each way a secure connection commonly fails on a
site (unknown CA, expired or not-yet-valid certificate, wrong host name, client
certificate missing or refused, bad login) gets its own message.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from pathlib import Path

from paho.mqtt.reasoncodes import ReasonCode

from ..config import MqttUplink, Tls


class UplinkError(Exception):
    """A connection attempt failed in a way a technician must see (TLS, login, DNS)."""


def _path(base_dir: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base_dir / path


def read_secret(cfg: MqttUplink, base_dir: Path) -> str | None:
    """The password, or None. Errors name the file or variable, never the value."""
    if cfg.password_file:
        path = _path(base_dir, cfg.password_file)
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise UplinkError(f"cannot read password_file {path}: {exc.strerror}") from exc
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise UplinkError(f"environment variable {cfg.password_env} (password_env) is not set")
        return value
    return None


def tls_settings(cfg: MqttUplink) -> Tls | None:
    if not cfg.tls_enabled:
        return None
    return cfg.tls if isinstance(cfg.tls, Tls) else Tls()


def tls_context(cfg: MqttUplink, base_dir: Path) -> ssl.SSLContext | None:
    """A client context that verifies the broker (system CAs unless ``tls.ca``)."""
    tls = tls_settings(cfg)
    if tls is None:
        return None
    ca = str(_path(base_dir, tls.ca)) if tls.ca else None
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise UplinkError(f"tls.ca: cannot load {ca}: {getattr(exc, 'strerror', None) or exc}") from exc
    if tls.cert and tls.key:
        cert, key = _path(base_dir, tls.cert), _path(base_dir, tls.key)
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except FileNotFoundError as exc:
            raise UplinkError(f"tls.cert/tls.key: file not found: {exc.filename}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise UplinkError(f"tls.cert/tls.key: cannot load {cert} with {key}: {exc}"
                              " (do the certificate and the key belong together?)") from exc
    if tls.insecure:
        ctx.check_hostname = False
    return ctx


def _clock() -> str:
    """The gateway's date: enough to spot a clock that is years off, stable enough for log-once."""
    return time.strftime("%Y-%m-%d", time.gmtime())


# OpenSSL X509_V_ERR_* codes (x509_vfy.h)
_UNKNOWN_CA = {2, 18, 19, 20, 21}
_NOT_YET_VALID, _EXPIRED = 9, 10
_HOST_MISMATCH = {62, 64}


def describe_verify_error(exc: ssl.SSLCertVerificationError, where: str, host: str) -> str:
    code, reason = exc.verify_code, exc.verify_message or str(exc)
    if code == _EXPIRED:
        return (f"TLS: the broker's certificate has expired ({where}); renew it on the broker,"
                f" or fix the gateway clock if it is wrong (gateway clock: {_clock()})")
    if code == _NOT_YET_VALID:
        return (f"TLS: the broker's certificate is not valid yet ({where}): the gateway clock is probably"
                f" wrong (gateway clock: {_clock()}; no RTC? check NTP)")
    if code in _HOST_MISMATCH:
        return (f"TLS: the broker's certificate is not valid for host '{host}' ({reason}); connect by the"
                " name in the certificate, or get a certificate for this name")
    if code in _UNKNOWN_CA:
        return (f"TLS: the broker's certificate is signed by an unknown CA ({reason}); set tls.ca to the"
                f" CA certificate that signs the broker ({where})")
    return f"TLS: the broker's certificate was rejected: {reason} ({where})"


def describe_tls_text(text: str, where: str) -> str | None:
    """Map an OpenSSL error or alert (ours, or the broker's about our certificate) to advice."""
    up = text.upper()
    if "CERTIFICATE_REQUIRED" in up or ("HANDSHAKE_FAILURE" in up and "ALERT" in up):
        return f"TLS: the broker requires a client certificate: set tls.cert and tls.key ({where})"
    if "ALERT_UNKNOWN_CA" in up:
        return f"TLS: the broker does not trust our client certificate (tls.cert): unknown CA ({where})"
    if "ALERT_CERTIFICATE_EXPIRED" in up:
        return (f"TLS: the broker says our client certificate (tls.cert) has expired ({where});"
                f" gateway clock: {_clock()}")
    if "ALERT_BAD_CERTIFICATE" in up or "ALERT_CERTIFICATE_REVOKED" in up or "ALERT_ACCESS_DENIED" in up:
        return f"TLS: the broker rejected our client certificate (tls.cert) ({where}): {text}"
    if "WRONG_VERSION_NUMBER" in up or "RECORD_LAYER_FAILURE" in up or "PACKET_LENGTH_TOO_LONG" in up:
        return (f"TLS: {where} does not speak TLS on this port; use the broker's TLS port (usually 8883)"
                " or set 'tls: false' for a plain one")
    if "SSL" in up or "TLS" in up:
        return f"TLS error with {where}: {text}"
    return None


def describe_connect_error(exc: BaseException, cfg: MqttUplink) -> str:
    where = f"{cfg.host}:{cfg.effective_port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return describe_verify_error(exc, where, cfg.host)
    closed = isinstance(exc, ConnectionResetError | ssl.SSLEOFError) or "UNEXPECTED_EOF" in str(exc).upper()
    if tls_settings(cfg) is not None and closed:
        # a plain MQTT listener reads the ClientHello as a bad packet and drops the connection
        return (f"TLS: the handshake with {where} failed: the server closed the connection"
                f" ({getattr(exc, 'strerror', None) or exc}) instead of answering; it most likely does"
                " not speak TLS on this port: use the broker's TLS port (usually 8883) or set 'tls: false'"
                " for a plain one")
    if isinstance(exc, ssl.SSLError):
        return describe_tls_text(str(exc), where) or f"TLS error with {where}: {exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host '{cfg.host}' (DNS: {exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where} (broker down or wrong port)"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} within {cfg.ack_timeout:.0f}s (network down, firewall, or wrong host)"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def describe_lost_before_connack(log_error: str | None, cfg: MqttUplink) -> str:
    """The socket closed between CONNECT and CONNACK; paho's last error says why."""
    where = f"{cfg.host}:{cfg.effective_port}"
    tls = tls_settings(cfg)
    if tls is not None and log_error and ("EOF" in log_error.upper() or "RESET" in log_error.upper()):
        # TLS 1.3: the broker checks our certificate after our side of the handshake is done,
        # and mosquitto closes without an alert when it has none it accepts
        if not tls.cert:
            return (f"TLS: {where} closed the connection right after the TLS handshake: it most likely"
                    " requires a client certificate: set tls.cert and tls.key")
        return (f"TLS: {where} closed the connection right after the TLS handshake: it most likely does"
                " not accept our client certificate (tls.cert: expired, or not signed by a CA it trusts)")
    if log_error:
        known = describe_tls_text(log_error, where)
        if known:
            return known
    if not cfg.tls_enabled:
        return (f"{where} closed the connection before answering CONNECT: a TLS port? (set tls, usually"
                " port 8883) or the broker refused this client")
    return f"{where} closed the connection before answering CONNECT ({log_error or 'no reason given'})"


# CONNACK reason codes: MQTT v5 (and v3.1.1 return codes as paho maps them)
_LOGIN_REFUSED = {134, 135, 4, 5}


def describe_connack(reason: ReasonCode, cfg: MqttUplink) -> str:
    where = f"{cfg.host}:{cfg.effective_port}"
    code = int(reason.value)
    if code in _LOGIN_REFUSED:
        who = f"user '{cfg.username}'" if cfg.username else "an anonymous client (no username)"
        source = (f"password_file {cfg.password_file}" if cfg.password_file
                  else f"password_env {cfg.password_env}" if cfg.password_env else "no password configured")
        return (f"login refused by {where} for {who}: {reason} (reason {code}); check username and the"
                f" password ({source})")
    if code in (133, 2):
        return f"{where} rejected the client id ({reason}); set client_id to a unique value"
    if code == 138:
        return f"{where} has banned this client ({reason})"
    if code in (136, 137, 3):
        return f"{where} is unavailable or busy ({reason}); will retry"
    if code in (132, 1):
        return f"{where} does not accept this MQTT version ({reason}); try protocol: \"3.1.1\""
    return f"{where} refused the connection: {reason} (reason {code})"
