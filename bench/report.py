"""The results as a text table (printed by ``python -m bench``) and as Markdown (for
docs/benchmarks.md: ``python -m bench --report bench/results.json --markdown``)."""

from __future__ import annotations

from typing import Any

from .common import fmt


def _verdict(f: dict[str, Any]) -> str:
    if f.get("met") is None:
        return f.get("note", "") if not f.get("target") else f"not judged; {f.get('note', '')}".rstrip("; ")
    return f["margin"]


def _ratio(f: dict[str, Any]) -> str:
    r = f.get("ratio_to_limit")
    return f"{r:.0%}" if r is not None else ""


def rows(results: dict[str, Any]) -> list[list[str]]:
    out = []
    for name, sc in results["scenarios"].items():
        if sc.get("error"):
            out.append([name, "ERROR", "", "", "", "", sc["error"].strip().splitlines()[-1][:100]])
            continue
        for f in sc["figures"]:
            value = f"{fmt(f['value'])} {f['unit']}".strip()
            limit = f"{fmt(f['limit'])} ({f['limit_label']})" if f.get("limit") is not None else ""
            out.append([name, f["label"], value, limit, _ratio(f), f.get("target", ""), _verdict(f)])
    return out


HEAD = ["scenario", "figure", "value", "limit, same run", "of limit", "target", "verdict"]


def text_table(results: dict[str, Any], width: int = 60) -> str:
    body = [[c if len(c) <= width else c[: width - 1] + "…" for c in r] for r in rows(results)]
    table = [HEAD, *body]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEAD))]
    lines = []
    for k, r in enumerate(table):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    m = results.get("summary", {})
    lines.append("")
    lines.append(f"targets met: {m.get('met', 0)}, missed: {m.get('missed', 0)}, not judged: {m.get('not_judged', 0)}"
                 f"; mode {results.get('mode')}, {results.get('duration_s', 0):.0f} s")
    return "\n".join(lines)


def markdown_table(results: dict[str, Any]) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows(results)]
    return "\n".join(lines)


def markdown_profiles(results: dict[str, Any], top: int = 6) -> str:
    """The top frames of every scenario's profile, for the docs."""
    out = []
    for name, sc in results["scenarios"].items():
        prof = sc.get("profile") or {}
        if not prof:
            continue
        out.append(f"#### {name}")
        if "error" in prof:
            out.append(f"profile unavailable: {prof['error']}")
            continue
        if "samples" in prof:
            out.append(f"- {prof['samples']} working samples; {prof.get('waiting_samples', 0)} more were waits"
                       " (select, Condition.wait) and are left out")
        for key, title in (("by_component_pct", "by component (leaf frame)"), ("self_pct", "self time, top lines"),
                           ("inclusive_project_pct", "inclusive, project functions"),
                           ("by_thread_pct", "by thread")):
            if prof.get(key):
                items = "; ".join(f"{n} {p}%" for n, p in prof[key][:top])
                out.append(f"- {title}: {items}")
        for key in ("cycle_time_ms", "import_total_s", "top_level_imports_ms", "rss_by_import_mb"):
            if key in prof:
                out.append(f"- {key}: {prof[key]}")
        out.append("")
    return "\n".join(out)
