"""Turn a row's status and matches into a verdict: keep, remove, quarantine or error.

Precedence: any ``remove`` match removes; else any ``quarantine`` match quarantines; else a row that
could not be checked is ``error`` (fail closed) or, under ``on_error="keep-and-flag"``, kept with an
``unchecked:<class>`` reason; else it is kept. ``tag`` matches change no verdict: they are recorded
(the row's reasons, ``tagged/<shard>.parquet``, the summary's ``tags`` counts).
"""
from __future__ import annotations

KEEP, REMOVE, QUARANTINE, ERROR = "keep", "remove", "quarantine", "error"
ON_ERROR = ("drop", "keep-and-flag")


def decide(row: dict, matches, actions: dict[str, str], on_error: str) -> dict:
    """Verdict record of one row. ``row`` holds row, key, url, sha256, status and error_class;
    ``matches`` are ``MatchRecord``s; ``actions`` maps every reason the run can give to its action."""
    by_action: dict[str, set] = {"remove": set(), "quarantine": set(), "tag": set()}
    for m in matches:
        by_action[actions[m.reason]].add(m.reason)
    if by_action["remove"]:
        verdict, reasons = REMOVE, by_action["remove"] | by_action["quarantine"]
    elif by_action["quarantine"]:
        verdict, reasons = QUARANTINE, set(by_action["quarantine"])
    elif row["status"] != "ok":
        verdict = ERROR if on_error == "drop" else KEEP
        reasons = {f"unchecked:{row['error_class']}"}
    else:
        verdict, reasons = KEEP, set()
    return {"row": row["row"], "key": row["key"], "url": row.get("url"), "sha256": row.get("sha256"),
            "verdict": verdict, "reasons": sorted(reasons | by_action["tag"]), "tags": sorted(by_action["tag"]),
            "matches": [m.as_row() for m in sorted(matches, key=lambda m: m.sort_key())]}
