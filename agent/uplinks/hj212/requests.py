"""What the platform may ask (HJ 212-2017 Appendix C flows), and the settings it may change.

A request with Flag A is answered 9011 (QnRtn 1 ready, 3 wrong PW, 4 wrong MN, 8 unknown
CN; 9 bad CRC, from the worker); a command then runs and ends with 9012 (ExeRtn 1 done, 3 refused, 100 no data).
Answers and uploads carry the request's QN. Changed intervals are kept in the uplink's
store and win over the config until the config's own value changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from . import packet as pk
from .aggregate import local, parse_data_time
from .config import Hj212Uplink
from .packet import Packet, PacketError
from .store import Hj212Store

log = logging.getLogger(__name__)

QN_RTN_PW = "3"
QN_RTN_MN = "4"
QN_RTN_CN = "8"
QN_RTN_CRC = "9"
ANSWER_CNS = frozenset({pk.DATA_ANSWER, pk.REQUEST_ANSWER, pk.EXECUTION_RESULT, "9013"})
EXE_RTN_REFUSED = "3"
NOTICE_ANSWER = "9013"
SETTABLE = ("rtd_interval", "min_interval", "overtime", "recount")


@dataclass(slots=True)
class Settings:
    rtd_interval: float
    min_interval: float
    overtime: float
    recount: int
    realtime: bool

    @classmethod
    def load(cls, cfg: Hj212Uplink, store: Hj212Store) -> Settings:
        settings = cls(cfg.rtd_interval, cfg.min_interval, cfg.overtime, cfg.recount, cfg.realtime)
        kept = store.meta("settings") or {}
        for key, (value, config_then) in kept.items():
            if key in SETTABLE and config_then == getattr(cfg, key):
                setattr(settings, key, type(getattr(settings, key))(value))
        return settings

    def change(self, cfg: Hj212Uplink, store: Hj212Store, key: str, value: float) -> None:
        setattr(self, key, type(getattr(self, key))(value))
        kept = store.meta("settings") or {}
        kept[key] = [value, getattr(cfg, key)]
        store.set_meta("settings", kept)


class Commands:
    """Answers one platform request with the packets to send, in order."""

    def __init__(self, name: str, cfg: Hj212Uplink, settings: Settings, store: Hj212Store, tz: ZoneInfo,
                 set_clock: Callable[[float], None] | None = None) -> None:
        self.name, self.cfg, self.settings, self.store, self.tz = name, cfg, settings, store, tz
        self._set_clock = set_clock or _set_system_clock

    def handle(self, req: Packet) -> list[Packet]:
        cfg = self.cfg
        ready = pk.answer_to(req, pk.REQUEST_ANSWER, QnRtn=pk.QN_RTN_READY)
        problem = QN_RTN_MN if req.mn != cfg.mn else QN_RTN_PW if req.pw != cfg.pw else None
        if problem is None and req.cn not in self._handlers():
            problem = QN_RTN_CN
        if problem is not None:
            log.warning("hj212 %s: request CN=%s refused (QnRtn=%s)", self.name, req.cn, problem)
            return [pk.answer_to(req, pk.REQUEST_ANSWER, QnRtn=problem)] if req.wants_answer else []
        if req.cn == "2012":  # a notice: answered 9013, nothing else
            self.settings.realtime = False
            log.info("hj212 %s: platform stopped real-time data", self.name)
            return [pk.answer_to(req, NOTICE_ANSWER)]
        out = [ready] if req.wants_answer else []
        return out + self._handlers()[req.cn](req)

    def bad_crc(self, frame: bytes) -> list[Packet]:
        """A request whose frame has a wrong CRC is answered 9011 QnRtn 9 when its QN can be
        read, so the platform sends it again; anything else with a bad CRC is only ignored."""
        try:
            req = pk.parse(frame[6:-6].decode("utf-8"))
        except (PacketError, UnicodeDecodeError):
            return []
        if req.wants_answer and req.qn and req.cn not in ANSWER_CNS:
            return [pk.answer_to(req, pk.REQUEST_ANSWER, QnRtn=QN_RTN_CRC)]
        return []

    def _handlers(self) -> dict[str, Callable[[Packet], list[Packet]]]:
        return {"1011": self._get_time, "1012": self._set_time, "1061": self._get_rtd, "1062": self._set_rtd,
                "1063": self._get_min, "1064": self._set_min, "1000": self._set_overtime,
                "2011": self._start_realtime, "2012": lambda _req: [],
                pk.MINUTE: self._history, pk.HOUR: self._history, pk.DAY: self._history}

    # -- helpers ------------------------------------------------------------------------------
    def _upload(self, req: Packet, **fields: str) -> Packet:
        return Packet(req.cn, self.cfg.mn, self.cfg.pw, self.cfg.st, pk.VERSION_2017, req.qn, [list(fields.items())])

    @staticmethod
    def _done(req: Packet, code: str = pk.EXE_RTN_OK) -> Packet:
        return pk.answer_to(req, pk.EXECUTION_RESULT, ExeRtn=code)

    def _number(self, req: Packet, key: str) -> float | None:
        try:
            value = float(req.fields().get(key, ""))
        except ValueError:
            return None
        return value if value > 0 else None

    # -- the commands ---------------------------------------------------------------------
    def _get_time(self, req: Packet) -> list[Packet]:
        return [self._upload(req, SystemTime=pk.data_time(datetime.now(self.tz))), self._done(req)]

    def _set_time(self, req: Packet) -> list[Packet]:
        text = req.fields().get("SystemTime", "")
        try:
            wanted = parse_data_time(text, self.tz)
        except ValueError:
            return [self._done(req, EXE_RTN_REFUSED)]
        offset = wanted - time.time()
        if not self.cfg.set_clock:
            log.warning("hj212 %s: platform asks to set the clock to %s (%+.1fs); not changed (set_clock: false)",
                        self.name, text, offset)
            return [self._done(req, EXE_RTN_REFUSED)]
        try:
            self._set_clock(wanted)
        except OSError as exc:
            log.error("hj212 %s: setting the clock to %s failed: %s", self.name, text, exc)
            return [self._done(req, "2")]
        log.warning("hj212 %s: clock set to %s by the platform (%+.1fs)", self.name, text, offset)
        return [self._done(req)]

    def _get_rtd(self, req: Packet) -> list[Packet]:
        return [self._upload(req, RtdInterval=pk.number(self.settings.rtd_interval)), self._done(req)]

    def _set_rtd(self, req: Packet) -> list[Packet]:
        value = self._number(req, "RtdInterval")
        if value is None:
            return [self._done(req, EXE_RTN_REFUSED)]
        self.settings.change(self.cfg, self.store, "rtd_interval", value)
        log.info("hj212 %s: platform set RtdInterval to %gs", self.name, value)
        return [self._done(req)]

    def _get_min(self, req: Packet) -> list[Packet]:
        return [self._upload(req, MinInterval=pk.number(self.settings.min_interval / 60)), self._done(req)]

    def _set_min(self, req: Packet) -> list[Packet]:
        minutes = self._number(req, "MinInterval")
        if minutes is None or 3600 % (minutes * 60):
            return [self._done(req, EXE_RTN_REFUSED)]
        self.settings.change(self.cfg, self.store, "min_interval", minutes * 60)
        log.info("hj212 %s: platform set MinInterval to %g min", self.name, minutes)
        return [self._done(req)]

    def _set_overtime(self, req: Packet) -> list[Packet]:
        overtime, recount = self._number(req, "OverTime"), req.fields().get("ReCount", "")
        if overtime is None or not recount.isdigit():
            return [self._done(req, EXE_RTN_REFUSED)]
        self.settings.change(self.cfg, self.store, "overtime", overtime)
        self.settings.change(self.cfg, self.store, "recount", int(recount))
        log.info("hj212 %s: platform set OverTime %gs, ReCount %s", self.name, overtime, recount)
        return [self._done(req)]

    def _start_realtime(self, req: Packet) -> list[Packet]:
        self.settings.realtime = True
        log.info("hj212 %s: platform started real-time data", self.name)
        return []

    def _history(self, req: Packet) -> list[Packet]:
        fields = req.fields()
        try:
            begin = parse_data_time(fields.get("BeginTime", ""), self.tz)
            end = parse_data_time(fields.get("EndTime", ""), self.tz)
        except ValueError:
            return [self._done(req, EXE_RTN_REFUSED)]
        records = self.store.history(req.cn, begin, end)
        cfg, now = self.cfg, datetime.now(self.tz)
        out = [pk.aggregate(r.cn, cfg.mn, cfg.pw, cfg.st, now, local(r.start, self.tz), r.values, answer=False)
               .with_qn(req.qn or pk.qn(now)) for r in records]
        log.info("hj212 %s: platform pulled CN=%s %s..%s: %d records", self.name, req.cn,
                 fields.get("BeginTime"), fields.get("EndTime"), len(records))
        return [*out, self._done(req, pk.EXE_RTN_OK if records else pk.EXE_RTN_NO_DATA)]


def _set_system_clock(epoch: float) -> None:
    time.clock_settime(time.CLOCK_REALTIME, epoch)
