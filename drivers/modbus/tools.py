"""The technician's Modbus tools: ``edge-agent probe`` (raw registers) and ``edge-agent scan``."""

from __future__ import annotations

from ..tools import ProtocolTools
from . import probe, scan

TOOLS = ProtocolTools(
    noun="Modbus devices", serial=(9600, "N"), line_labels={"tcp": "Modbus TCP", "rtu-over-tcp": "RTU over TCP"},
    add_probe_arguments=probe.add_probe_arguments, probe=probe.probe, probe_options=probe.OPTIONS,
    probe_examples=probe.EXAMPLES, probe_notes=probe.NOTES,
    add_scan_arguments=scan.add_scan_arguments, scan=scan.scan,
    scan_examples=scan.EXAMPLES, scan_notes=scan.NOTES,
)
