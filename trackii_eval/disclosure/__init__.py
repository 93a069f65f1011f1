"""Statistical disclosure control of everything trackii_eval publishes.

One step between results and every output (impact report, per-dialogue reports, dashboard,
exported tables)::

    from trackii_eval.disclosure import TableSet, protect

    ts = TableSet()
    total = ts.count("response", (5, "all"), 116)
    parts = [ts.count("response", (5, arm), n) for arm, n in (("comparison", 33),
                                                              ("dialogue", 83))]
    ts.total(total, parts, name="wave 5 responses = sum over arms")
    mean = ts.statistic("means", (5, "comparison"), n=33)
    result = protect(ts, k=40)
    result.show(parts[0], 33)      # 'x'
    result.show(mean, "46.4")      # 'x' (describes fewer than 40 people)

Own code on ``scipy.optimize.milp`` / ``linprog`` (HiGHS) rather than a library: sdcMicro and
tau-Argus protect tables defined as cross-classifications of one microdata file (with
hierarchies), while a report here links tables through arbitrary relations (a count printed in
two tables, model observation counts equal to sums of per-wave counts, quarantined rows per rule
and wave that are never printed), which their table definitions cannot express. ACRO (SACRO)
checks single research outputs against thresholds but does no complementary suppression.
"""

from .attack import Finding, attacker_interval, audit, protection_levels
from .primary import MIN_THRESHOLD, check_threshold, primary_reason, primary_suppressions
from .protect import MARKER, Disclosure, protect
from .secondary import SuppressionRun, complementary_suppression
from .tables import Cell, CellId, LinearSystem, TableSet

__all__ = [
    "MARKER",
    "MIN_THRESHOLD",
    "Cell",
    "CellId",
    "Disclosure",
    "Finding",
    "LinearSystem",
    "SuppressionRun",
    "TableSet",
    "attacker_interval",
    "audit",
    "check_threshold",
    "complementary_suppression",
    "primary_reason",
    "primary_suppressions",
    "protect",
    "protection_levels",
]
