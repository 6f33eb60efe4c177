"""Turn a row's features and matches into a verdict: keep, remove, quarantine or error.

Precedence: any ``remove`` match removes; else any ``quarantine`` match quarantines; else a row that
could not be checked is ``error`` (fail closed) or, under ``on_error="keep-and-flag"``, kept with an
``unchecked:<class>`` reason; else it is kept. ``tag`` matches are recorded and change nothing.
"""
from __future__ import annotations

KEEP, REMOVE, QUARANTINE, ERROR = "keep", "remove", "quarantine", "error"
VERDICTS = (KEEP, REMOVE, QUARANTINE, ERROR)
ON_ERROR = ("drop", "keep-and-flag")


def reason_for(match: dict) -> str:
    """The reason a match contributes: ``hashlist:<list>``, ``concept:<name>``, ``rule:<name>``,
    ``neighbor-of-known-bad`` (kNN expansion) or ``integrity-mismatch``."""
    if match["kind"] in ("neighbor", "integrity"):
        return match["source"]
    return f"{match['kind']}:{match['source']}"


def decide(features: dict, matches: list[dict], actions: dict[str, str], on_error: str) -> dict:
    """Verdict record for one row (see module doc). ``actions`` maps a reason to its action."""
    by_action: dict[str, set] = {"remove": set(), "quarantine": set(), "tag": set()}
    for m in matches:
        reason = reason_for(m)
        by_action[actions[reason]].add(reason)
    if by_action["remove"]:
        verdict, reasons = REMOVE, by_action["remove"] | by_action["quarantine"]
    elif by_action["quarantine"]:
        verdict, reasons = QUARANTINE, set(by_action["quarantine"])
    elif features["status"] != "ok":
        unchecked = f"unchecked:{features['error_class']}"
        verdict = ERROR if on_error == "drop" else KEEP
        reasons = {unchecked}
    else:
        verdict, reasons = KEEP, set()
    reasons |= by_action["tag"]
    return {"row": features["row"], "key": features["key"], "url": features.get("url"),
            "sha256": features.get("sha256"), "verdict": verdict, "reasons": sorted(reasons),
            "matches": sorted(matches, key=lambda m: (m["source"], m["distance"], m["entry"]))}
