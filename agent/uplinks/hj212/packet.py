"""HJ 212-2017 data segments: ``QN=...;ST=..;CN=....;PW=...;MN=...;Flag=.;CP=&&...&&``.

A :class:`Packet` is one data segment, built strictly and parsed leniently (fields in any
order, missing optional ones). ``CP`` holds the command parameters: groups separated by
``;``, the fields of one group (one factor) by ``,``, each ``key=value``. Flag bits: A
(bit 0) the receiver must answer, D (bit 1) the packet is one of several (``PNUM``/``PNO``),
bits 2-7 the version, 1 for HJ 212-2017.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

VERSION_2017 = 1 << 2
FLAG_ANSWER = 1 << 0
FLAG_SPLIT = 1 << 1

# commands (CN) of the standard that the agent sends or answers
REALTIME = "2011"
MINUTE = "2051"
HOUR = "2061"
DAY = "2031"
DATA_ANSWER = "9014"
REQUEST_ANSWER = "9011"
EXECUTION_RESULT = "9012"

QN_RTN_READY = "1"  # 9011 QnRtn: ready to execute
EXE_RTN_OK = "1"  # 9012 ExeRtn: done
EXE_RTN_NO_DATA = "100"  # 9012 ExeRtn: no data for the period asked


class PacketError(ValueError):
    """A data segment that is not a well-formed HJ 212 packet."""


@dataclass(frozen=True, slots=True)
class Packet:
    cn: str
    mn: str
    pw: str = ""
    st: str = "39"
    flag: int = VERSION_2017
    qn: str | None = None
    cp: list[list[tuple[str, str]]] = field(default_factory=list)  # groups of (key, value)
    pnum: int | None = None
    pno: int | None = None

    @property
    def wants_answer(self) -> bool:
        return bool(self.flag & FLAG_ANSWER)

    def segment(self) -> str:
        head = [f"QN={self.qn}"] if self.qn is not None else []
        head += [f"ST={self.st}", f"CN={self.cn}", f"PW={self.pw}", f"MN={self.mn}", f"Flag={self.flag}"]
        if self.pnum is not None and self.pno is not None:
            head += [f"PNUM={self.pnum}", f"PNO={self.pno}"]
        cp = ";".join(",".join(f"{k}={v}" for k, v in group) for group in self.cp)
        return ";".join(head) + f";CP=&&{cp}&&"

    def fields(self) -> dict[str, str]:
        """Every CP field by key (later groups win on a repeated key)."""
        return {k: v for group in self.cp for k, v in group}

    def with_qn(self, qn: str) -> Packet:
        return replace(self, qn=qn)


def parse(segment: str) -> Packet:
    """A received data segment as a Packet; PacketError when it is not one."""
    head, sep, rest = segment.partition("CP=&&")
    if not sep or not rest.endswith("&&"):
        raise PacketError("no CP=&&...&& in the data segment")
    values: dict[str, str] = {}
    for part in head.rstrip(";").split(";"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise PacketError(f"'{part}' is not key=value")
        values[key.strip()] = value.strip()
    for required in ("CN", "MN"):
        if required not in values:
            raise PacketError(f"{required} is missing")
    try:
        flag = int(values.get("Flag", "0"))
        pnum = int(values["PNUM"]) if "PNUM" in values else None
        pno = int(values["PNO"]) if "PNO" in values else None
    except ValueError as exc:
        raise PacketError(f"a number field is not a number: {exc}") from exc
    return Packet(cn=values["CN"], mn=values["MN"], pw=values.get("PW", ""), st=values.get("ST", ""),
                  flag=flag, qn=values.get("QN"), cp=_parse_cp(rest[:-2]), pnum=pnum, pno=pno)


def _parse_cp(text: str) -> list[list[tuple[str, str]]]:
    groups: list[list[tuple[str, str]]] = []
    for group in text.split(";"):
        if not group:
            continue
        fields: list[tuple[str, str]] = []
        for item in group.split(","):
            key, eq, value = item.partition("=")
            if not eq:
                raise PacketError(f"CP field '{item}' is not key=value")
            fields.append((key.strip(), value.strip()))
        groups.append(fields)
    return groups


def qn(at: datetime) -> str:
    """A request number: the local time to the millisecond, yyyyMMddHHmmssSSS."""
    return at.strftime("%Y%m%d%H%M%S") + f"{at.microsecond // 1000:03d}"


def data_time(at: datetime) -> str:
    return at.strftime("%Y%m%d%H%M%S")


def number(value: float) -> str:
    """A value as the standard writes it: plain decimal, no exponent, no trailing zeros."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def realtime(mn: str, pw: str, st: str, at: datetime, taken: datetime,
             values: dict[str, tuple[float | None, str]], answer: bool = True) -> Packet:
    """2011: ``{factor: (value, data flag)}`` at ``taken``; a factor without a value sends its flag only."""
    group: list[tuple[str, str]] = [("DataTime", data_time(taken))]
    cp = [group]
    for code, (value, flag) in values.items():
        fields = [(f"{code}-Rtd", number(value))] if value is not None else []
        cp.append([*fields, (f"{code}-Flag", flag)])
    return Packet(REALTIME, mn, pw, st, VERSION_2017 | (FLAG_ANSWER if answer else 0), qn(at), cp)


def aggregate(cn: str, mn: str, pw: str, st: str, at: datetime, period_start: datetime,
              values: dict[str, tuple[float, float, float, str] | tuple[None, None, None, str]],
              answer: bool = True) -> Packet:
    """2051/2061/2031: ``{factor: (min, avg, max, data flag)}``; ``DataTime`` is the period's start."""
    cp: list[list[tuple[str, str]]] = [[("DataTime", data_time(period_start))]]
    for code, (lo, avg, hi, flag) in values.items():
        stats = [] if avg is None or lo is None or hi is None else [
            (f"{code}-Min", number(lo)), (f"{code}-Avg", number(avg)), (f"{code}-Max", number(hi))]
        cp.append([*stats, (f"{code}-Flag", flag)])
    return Packet(cn, mn, pw, st, VERSION_2017 | (FLAG_ANSWER if answer else 0), qn(at), cp)


def answer_to(request: Packet, cn: str, **fields: str) -> Packet:
    """An answer (9014, 9011, 9012) to ``request``: same QN, ST 91 (system interaction)."""
    return Packet(cn, request.mn, request.pw, "91", VERSION_2017, request.qn, [list(fields.items())] if fields else [])
