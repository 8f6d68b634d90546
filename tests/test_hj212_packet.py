"""HJ 212-2017 data segments: built as the standard writes them, parsed leniently."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agent.uplinks.hj212 import packet as p
from agent.uplinks.hj212.frame import decode, encode

SHANGHAI = ZoneInfo("Asia/Shanghai")
MN = "010000A8900016F000169DC0"
EXAMPLE = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&"


def test_the_standards_example_parses_and_rebuilds_to_the_same_segment() -> None:
    pkt = p.parse(EXAMPLE)
    assert (pkt.qn, pkt.st, pkt.cn, pkt.pw, pkt.mn, pkt.flag) == ("20160801085857223", "32", "1062", "100000", MN, 5)
    assert pkt.wants_answer and pkt.fields() == {"RtdInterval": "30"}
    assert pkt.segment() == EXAMPLE


def test_a_realtime_packet_carries_value_and_flag_per_factor_in_local_time() -> None:
    at = datetime(2026, 11, 28, 8, 30, 0, 123000, tzinfo=SHANGHAI)
    pkt = p.realtime(MN, "123456", "39", at, at.replace(microsecond=0),
                     {"a34004": (35.0, "N"), "a34002": (80.5, "N"), "a01001": (None, "B")})
    assert pkt.segment() == (
        "QN=20261128083000123;ST=39;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;"
        "CP=&&DataTime=20261128083000;a34004-Rtd=35,a34004-Flag=N;a34002-Rtd=80.5,a34002-Flag=N;a01001-Flag=B&&")
    assert decode(encode(pkt.segment())) == pkt.segment()  # fits a frame as is
    assert p.parse(pkt.segment()) == pkt


def test_an_aggregate_has_min_avg_max_and_flag_with_the_period_start() -> None:
    start = datetime(2026, 11, 28, 8, 0, tzinfo=SHANGHAI)
    pkt = p.aggregate(p.MINUTE, MN, "123456", "39", start.replace(minute=10, second=2), start,
                      {"a34004": (30.0, 35.25, 41.0, "N"), "a34002": (None, None, None, "D")}, answer=False)
    fields = pkt.fields()
    assert fields["DataTime"] == "20261128080000" and pkt.flag == 4 and not pkt.wants_answer
    assert (fields["a34004-Min"], fields["a34004-Avg"], fields["a34004-Max"], fields["a34004-Flag"]) == (
        "30", "35.25", "41", "N")
    assert "a34002-Avg" not in fields and fields["a34002-Flag"] == "D"


def test_answers_keep_the_request_qn() -> None:
    request = p.parse(EXAMPLE)
    ack = p.answer_to(request, p.DATA_ANSWER)
    assert ack.segment() == f"QN=20160801085857223;ST=91;CN=9014;PW=100000;MN={MN};Flag=4;CP=&&&&"
    done = p.answer_to(request, p.EXECUTION_RESULT, ExeRtn=p.EXE_RTN_NO_DATA)
    assert done.fields() == {"ExeRtn": "100"}


def test_parsing_is_lenient_on_order_and_strict_on_shape() -> None:
    pkt = p.parse(f"MN={MN};CN=9014;QN=20261128083000123;Flag=4;CP=&&&&")
    assert (pkt.cn, pkt.qn, pkt.st, pkt.cp) == ("9014", "20261128083000123", "", [])
    for bad in ("QN=1;CN=2011;MN=x", f"CN=2011;MN={MN};CP=&&a=1", f"CN=2011;MN={MN};CP=&&oops&&",
                f"ST=39;MN={MN};CP=&&&&", f"CN=2011;MN={MN};Flag=x;CP=&&&&"):
        with pytest.raises(p.PacketError):
            p.parse(bad)


@pytest.mark.parametrize(("value", "text"), [(35.0, "35"), (0.1, "0.1"), (-0.0, "0"), (1e-7, "0"),
                                             (123456.789, "123456.789"), (-2.5, "-2.5")])
def test_numbers_are_plain_decimals(value: float, text: str) -> None:
    assert p.number(value) == text
