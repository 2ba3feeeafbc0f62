"""``phalanx doctor``: the doctor's findings for people, and start estimates as words.

Rendering only; the findings come from the server (``Client.doctor``), which runs the
analyzers (phalanx.ops). Talks to the server only through ``phalanx.client``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from phalanx.cli.tables import format_age
from phalanx.client import ApiError, Client, DoctorReport, EstimateInfo, FindingInfo

_MAX_FACTS = 8
_SKIPPED_FACTS = frozenset({"flavors"})


def render_report(report: DoctorReport) -> str:
    """Findings most urgent first: severity, code, object, the summary, the evidence and the
    fix; or a line saying nothing is wrong."""
    target = report["target"] or "the cluster"
    if not report["findings"]:
        return f"No problems found in {target}."
    lines = [f"{len(report['findings'])} findings in {target}:", ""]
    for finding in report["findings"]:
        lines += _finding_lines(finding)
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def _finding_lines(f: FindingInfo) -> list[str]:
    about = "" if f["subject"] in ("", f["object"]) else f"  (affects {f['subject']})"
    lines = [
        f"{f['severity'].upper():8} {f['code']}  {f['object']}{about}  confidence {f['confidence']:.2f}",
        f"  {f['summary']}",
    ]
    facts = _facts_text(f["evidence"]["facts"])
    if facts:
        lines.append(f"  evidence: {facts}")
    lines += [f"  event: {e}" for e in f["evidence"]["events"]]
    lines.append(f"  fix: {f['fix']}")
    return lines


def _facts_text(facts: Mapping[str, object]) -> str:
    shown = [
        f"{key}={json.dumps(value, ensure_ascii=False)}"
        for key, value in facts.items()
        if key not in _SKIPPED_FACTS and value not in (None, "", [], {})
    ]
    more = f", … ({len(shown) - _MAX_FACTS} more in -o json)" if len(shown) > _MAX_FACTS else ""
    return ", ".join(shown[:_MAX_FACTS]) + more


#: At this ``EstimateInfo.higher_priority_load`` or more, higher-priority work arrives faster
#: than the cluster serves it (the API's meaning of the field).
OVERLOADED = 1.0


def start_text(estimate: EstimateInfo | None) -> str:
    """``in 12m``, ``now``, or ``unknown`` (no estimate within a week, or never as things
    stand); ``-`` when there is no estimate (the job is not pending). A ``+`` after the
    start: work of higher priority arrives faster than the cluster serves it
    (``is_overloaded``), and the job starts later while it keeps coming."""
    if estimate is None:
        return "-"
    wait = estimate["wait_s"]
    if wait is None:
        return "unknown"
    text = "now" if wait < 1 else f"in {format_age(wait)}"
    return f"{text}+" if is_overloaded(estimate) else text


def is_overloaded(estimate: EstimateInfo) -> bool:
    """Whether the work of higher priority submitted lately asks at least the whole cluster
    (an older server does not say: no)."""
    return estimate.get("higher_priority_load", 0.0) >= OVERLOADED


def overload_note(names: Iterable[str], estimates: Mapping[str, EstimateInfo]) -> str:
    """What a ``+`` in a wide job table's START means, when one of the jobs ``names`` shows
    it; empty otherwise."""
    shown = (estimates.get(n) for n in names)
    if not any(e is not None and e["wait_s"] is not None and is_overloaded(e) for e in shown):
        return ""
    return (
        "START +: higher-priority work arrives faster than the cluster serves it; the job "
        "starts later while it keeps coming (phalanx describe job NAME)"
    )


def job_estimates(client: Client) -> dict[str, EstimateInfo]:
    """Every pending job's estimate by name; empty from a server too old to estimate."""
    try:
        return {e["job"]: e for e in client.estimates()}
    except ApiError as exc:
        if exc.status == 404:
            return {}
        raise
