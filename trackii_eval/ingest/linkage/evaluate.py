"""Linkage quality against known truth, and a simulator of messy SGIC panels."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from .codes import EXAMPLE_SGIC

# ----------------------------------------------------------------------------- evaluation


def score_linkage(records: pd.DataFrame, person: pd.Series, truth: pd.Series) -> dict[str, Any]:
    """Compare a linkage with the true persons (for simulations and audits).

    Parameters
    ----------
    records
        The linked records (``record_id`` and ``wave`` are used).
    person
        record_id -> predicted person (missing for unresolved records), e.g.
        :attr:`LinkageResult.person`, or a naive linkage to compare with.
    truth
        record_id -> true person.

    Returns
    -------
    dict
        ``false_links`` (records joined to a person whose earliest record belongs to someone
        else), ``false_link_rate`` (per linked record), ``false_pairs`` (record pairs wrongly
        in one person), ``true_links`` (records that should join an earlier record),
        ``correct_links``, ``recall``, ``unresolved`` and ``match_rate_by_wave`` /
        ``achievable_by_wave`` (share of baseline persons correctly linked to / truly present
        in each wave).

    References
    ----------
    .. [1] Christen, P. (2012). Data Matching, ch. 7 (measuring linkage quality). Springer.
    """
    df = pd.DataFrame({
        "record_id": records["record_id"].to_numpy(dtype=object),
        "wave": records["wave"].to_numpy(),
    })
    df["pred"] = person.reindex(df["record_id"]).to_numpy(dtype=object)
    df["true"] = truth.reindex(df["record_id"]).to_numpy(dtype=object)
    df = df.sort_values(["wave", "record_id"], kind="stable")
    resolved = df[df["pred"].notna()]
    # The truth of each predicted person's earliest record (drop_duplicates keeps missing values,
    # unlike groupby "first", which would skip an unresolved earliest record).
    first_true_of_pred = resolved["pred"].map(
        resolved.drop_duplicates("pred").set_index("pred")["true"])
    is_first_pred = ~resolved.duplicated("pred")
    linked = resolved[~is_first_pred]
    false_links = int((linked["true"] != first_true_of_pred[~is_first_pred]).sum())
    pair_counts = resolved.groupby(["pred", "true"], sort=False).size()
    group_sizes = resolved.groupby("pred", sort=False).size()
    same_pairs = int((pair_counts * (pair_counts - 1) // 2).sum())
    all_pairs = int((group_sizes * (group_sizes - 1) // 2).sum())
    first_pred_of_true = df["true"].map(df.drop_duplicates("true").set_index("true")["pred"])
    is_first_true = ~df.duplicated("true")
    later = df[~is_first_true]
    ok = later["pred"].notna() & (later["pred"] == first_pred_of_true[~is_first_true])
    baseline = df["wave"].min()
    base_true = set(df.loc[df["wave"] == baseline, "true"])
    rate, achievable = {}, {}
    good = set(later.loc[ok, "record_id"]) | set(df.loc[df["wave"] == baseline, "record_id"])
    for w, sub in df.groupby("wave"):
        in_base = sub[sub["true"].isin(base_true)]
        achievable[int(w)] = len(in_base) / len(base_true) if base_true else float("nan")
        rate[int(w)] = (float(in_base["record_id"].isin(good).sum() / len(base_true))
                        if base_true else float("nan"))
    return {
        "false_links": false_links,
        "false_link_rate": false_links / len(linked) if len(linked) else 0.0,
        "false_pairs": all_pairs - same_pairs,
        "true_links": len(later),
        "correct_links": int(ok.sum()),
        "recall": float(ok.sum() / len(later)) if len(later) else float("nan"),
        "unresolved": int(df["pred"].isna().sum()),
        "match_rate_by_wave": rate,
        "achievable_by_wave": achievable,
    }


# ----------------------------------------------------------------------------- simulation

_MOTHER_NAMES = [
    "MA", "SA", "FA", "RA", "LE", "HA", "NA", "YA", "DA", "RI", "SH", "AY", "MI", "ZA", "AM",
    "NO", "TA", "KA", "EL", "RU", "ES", "BA", "GA", "HU", "IM", "JA", "LI", "OR", "AD", "AN",
]
_PLACES = {
    0: ["NE", "PO", "HI", "RI", "VA", "GR", "ST", "LA", "MO", "BE", "CA", "FO", "WE", "KI"],
    1: ["SO", "BA", "DU", "AL", "MA", "QA", "TE", "OA", "ZE", "HA", "KU", "FA", "RA", "BE"],
}
# Neighbouring keys on a QWERTY keyboard (typing errors are mostly adjacent keys) and digits.
_KEY_NEIGHBOURS = {
    "A": "QSZ", "B": "VGHN", "C": "XDFV", "D": "SERFCX", "E": "WSDR", "F": "DRTGVC",
    "G": "FTYHBV", "H": "GYUJNB", "I": "UJKO", "J": "HUIKMN", "K": "JIOLM", "L": "KOP",
    "M": "NJK", "N": "BHJM", "O": "IKLP", "P": "OL", "Q": "WA", "R": "EDFT", "S": "AWEDXZ",
    "T": "RFGY", "U": "YHJI", "V": "CFGB", "W": "QASE", "X": "ZSDC", "Y": "TGHU", "Z": "ASX",
    "0": "9", "1": "2", "2": "13", "3": "24", "4": "35", "5": "46", "6": "57", "7": "68",
    "8": "79", "9": "80",
}


def _zipf_weights(k: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1) ** s
    return w / w.sum()


def simulate_sgic_panel(
    n: int = 1000,
    waves: int = 4,
    typo_rate: float = 0.08,
    seed: int = 0,
    *,
    attrition: float = 0.15,
    late_joiners: float = 0.03,
    shared_code_rate: float = 0.01,
    similar_code_rate: float = 0.0,
    format_noise: float = 0.3,
    dialogue_size: int = 24,
    comparison_share: float = 0.3,
    sides: tuple[str, str] = ("North", "South"),
) -> tuple[pd.DataFrame, pd.Series]:
    """Simulate SGIC panel records with realistic errors, and the true person of each record.

    Persons belong to one side and either a dialogue (about ``dialogue_size`` people, both
    sides) or the comparison group (no dialogue: large blocks, where chance coincidences of
    codes concentrate). Codes follow :data:`EXAMPLE_SGIC`; mothers' names, birthplaces and
    birth years are drawn from skewed distributions, so near-identical codes occur by chance
    as they do in real communities, ``similar_code_rate`` of persons are given the code of
    another person of their block with one element changed (a neighbour one element away),
    and ``shared_code_rate`` of persons are given exactly the
    code of another person of their block. At each later wave a person is missing with
    probability ``attrition`` and ``late_joiners * n`` new persons appear. Each record has,
    with probability ``typo_rate``, exactly one error: an adjacent-key substitution in one
    element, the birth month off by one, two characters of one element swapped, or one
    element answered differently (another birthplace spelling, a nickname). With probability
    ``format_noise`` a record is also written differently without being wrong (case,
    separators, a month without its leading zero between separators, the letter O for zero).

    Parameters
    ----------
    n
        Persons at baseline.
    waves
        Number of waves (1, 2, ...).
    typo_rate
        Share of records with one error.
    seed
        Seed of the random generator; the same seed gives the same panel.
    attrition, late_joiners, shared_code_rate, similar_code_rate, format_noise, dialogue_size,
    comparison_share,
    sides
        See above.

    Returns
    -------
    records : pandas.DataFrame
        ``record_id`` (``"wave<k>.csv:row <r>"``), ``wave``, ``code``, ``side``, ``dialogue``.
    truth : pandas.Series
        record_id -> true person (``"T000001"``, ...), named ``truth``.

    References
    ----------
    .. [1] Schnell, R., Bachteler, T. and Reiher, J. (2010). Improving the use of
       self-generated identification codes. Evaluation Review 34(5), 391-418 (error types).
    .. [2] Audette, L. M., Hammond, M. S. and Rochester, N. K. (2020). Educational and
       Psychological Measurement 80(1), 163-185.
    """
    rng = np.random.default_rng(seed)
    name_p = _zipf_weights(len(_MOTHER_NAMES), 0.9)
    place_p = _zipf_weights(len(_PLACES[0]), 1.1)

    n_dialogue = max(1, round(n * (1 - comparison_share) / dialogue_size))

    def new_people(k: int) -> list[dict[str, Any]]:
        # Drawn in bulk: one generator call per attribute, not per person.
        side = rng.integers(2, size=k)
        in_dialogue = rng.random(k) >= comparison_share
        dialogue = rng.integers(n_dialogue, size=k) + 1
        name = rng.choice(len(_MOTHER_NAMES), size=k, p=name_p)
        month = rng.integers(1, 13, size=k)
        place = rng.choice(len(_PLACES[0]), size=k, p=place_p)
        year = np.clip(np.round(rng.normal(1978, 11, size=k)), 1940, 2004).astype(int)
        return [
            {
                "side": sides[side[i]],
                "dialogue": f"D{dialogue[i]}" if in_dialogue[i] else None,
                "code": [_MOTHER_NAMES[name[i]], f"{month[i]:02d}", _PLACES[side[i]][place[i]],
                         f"{year[i] % 100:02d}"],
                "s": int(side[i]),
            }
            for i in range(k)
        ]

    people = new_people(n)
    by_block: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for i, person in enumerate(people):
        by_block[(person["side"], person["dialogue"])].append(i)
    # Two people of one block sharing a code by chance (more often than one would think).
    for i in range(n):
        if similar_code_rate and rng.random() < similar_code_rate:
            same = [j for j in by_block[(people[i]["side"], people[i]["dialogue"])] if j != i]
            if same:
                code = list(people[same[int(rng.integers(len(same)))]]["code"])
                el = int(rng.integers(4))
                pool = (_MOTHER_NAMES if el == 0 else _PLACES[people[i]["s"]] if el == 2 else
                        [f"{k:02d}" for k in (range(1, 13) if el == 1 else range(100))])
                choices = [v for v in pool if v != code[el]]
                code[el] = choices[int(rng.integers(len(choices)))]
                people[i]["code"] = code
                continue
        if rng.random() < shared_code_rate:
            same = [j for j in by_block[(people[i]["side"], people[i]["dialogue"])] if j != i]
            if same:
                people[i]["code"] = list(people[same[int(rng.integers(len(same)))]]["code"])
    present = [set(range(n))]
    for _ in range(1, waves):
        joiners = [len(people) + k for k in range(int(rng.binomial(n, late_joiners)))]
        people.extend(new_people(len(joiners)))
        stay = {i for i in range(len(people) - len(joiners)) if rng.random() >= attrition}
        present.append(stay | set(joiners))

    def erroneous(code: list[str], s: int) -> list[str]:
        out = list(code)
        kind = rng.choice(["substitute", "month_off", "swap", "element"],
                          p=[0.4, 0.2, 0.15, 0.25])
        el = int(rng.integers(4))
        if kind == "month_off":
            m = int(out[1])
            m = m - 1 if m == 12 or (m > 1 and rng.random() < 0.5) else m + 1
            out[1] = f"{m:02d}"
        elif kind == "swap" and out[el][0] != out[el][1]:
            out[el] = out[el][::-1]
        elif kind == "element":
            pool = (_MOTHER_NAMES if el == 0 else _PLACES[s] if el == 2 else
                    [f"{k:02d}" for k in (range(1, 13) if el == 1 else range(100))])
            choices = [v for v in pool if v != out[el]]
            out[el] = choices[int(rng.integers(len(choices)))]
        else:
            pos = int(rng.integers(2))
            ch = out[el][pos]
            nb = _KEY_NEIGHBOURS[ch]
            out[el] = (out[el][:pos] + nb[int(rng.integers(len(nb)))] + out[el][pos + 1 :])
        return out

    def written(code: list[str]) -> str:
        if rng.random() >= format_noise:
            return "".join(code)
        parts = list(code)
        if rng.random() < 0.3:
            parts[1] = parts[1].replace("0", "O") if parts[1].startswith("0") else parts[1]
        sep = str(rng.choice(["", " ", "-", " - ", "."]))
        if sep and parts[1].startswith("0") and rng.random() < 0.5:
            parts[1] = parts[1][1:]
        text = sep.join(parts)
        return text.lower() if rng.random() < 0.5 else text

    rows, truth = [], []
    for w in range(1, waves + 1):
        ids = sorted(present[w - 1])
        row_numbers = rng.permutation(len(ids)) + 2  # row 1 is the header
        for pid, row in zip(ids, row_numbers, strict=True):
            person = people[pid]
            code = person["code"]
            if rng.random() < typo_rate:
                code = erroneous(code, person["s"])
            rid = f"wave{w}.csv:row {row}"
            rows.append({"record_id": rid, "wave": w, "code": written(code),
                         "side": person["side"], "dialogue": person["dialogue"]})
            truth.append((rid, f"T{pid + 1:06d}"))
    records = pd.DataFrame(rows, columns=["record_id", "wave", "code", "side", "dialogue"])
    records = records.sort_values(["wave", "record_id"], kind="stable").reset_index(drop=True)
    truth_s = pd.Series(dict(truth), name="truth")
    truth_s.index.name = "record_id"
    return records, truth_s.reindex(records["record_id"])


def measure_linkage(
    seeds: Iterable[int] = range(20),
    *,
    typo_rate: float = 0.08,
    n: int = 300,
    waves: int = 4,
    late_joiners: float = 0.0,
    similar_code_rate: float = 0.05,
    **link_options: Any,
) -> pd.DataFrame:
    """Link simulated panels and score them against the truth, one row per seed.

    Parameters
    ----------
    seeds
        Seeds of :func:`simulate_sgic_panel`.
    typo_rate, n, waves, late_joiners, similar_code_rate
        Passed to :func:`simulate_sgic_panel`.
    **link_options
        Passed to :func:`~trackii_eval.ingest.linkage.link_records` (``late_entrants``
        defaults to ``late_joiners > 0``).

    Returns
    -------
    pandas.DataFrame
        Per seed: ``records``; ``wrong_links`` (records joined to another true person's
        records: merges); ``silent_wrong_links`` (those without a review line on either
        record); ``split_persons`` (true persons whose stored records carry two or more
        pseudonyms); ``silent_splits`` (splits none of whose later pieces starts with a listed
        record); ``review_share`` (records quarantined for review / records);
        ``listed_share`` (records stored but listed / records); ``match_rate`` (mean over
        follow-up waves of the share of baseline persons correctly linked, relative to those
        truly present) and ``recall`` (later records of a person correctly linked).

    References
    ----------
    .. [1] Christen, P. (2012). Data Matching, ch. 7 (measuring linkage quality). Springer.
    """
    from .link import link_records  # here: link imports nothing from this module

    rows = []
    for seed in seeds:
        recs, truth = simulate_sgic_panel(n, waves, typo_rate, seed, late_joiners=late_joiners,
                                          similar_code_rate=similar_code_rate)
        options = {"late_entrants": late_joiners > 0, **link_options}
        res = link_records(recs, EXAMPLE_SGIC, **options)
        score = score_linkage(recs, res.person, truth)
        flagged = set(res.ambiguous["record_id"]) | set(res.listed["record_id"])
        df = pd.DataFrame({"record_id": recs["record_id"], "wave": recs["wave"],
                           "pred": res.person.reindex(recs["record_id"]).to_numpy(),
                           "true": truth.reindex(recs["record_id"]).to_numpy()})
        df = df[df["pred"].notna()].sort_values(["wave", "record_id"])
        first = df.drop_duplicates("pred")  # the record that started each predicted person
        owner = dict(zip(first["pred"], first["true"], strict=True))
        starter = dict(zip(first["pred"], first["record_id"], strict=True))
        wrong = df[~df["record_id"].isin(first["record_id"])
                   & (df["pred"].map(owner) != df["true"])]
        silent_wrong = wrong[~wrong["record_id"].isin(flagged)
                             & ~wrong["pred"].map(starter).isin(flagged)]
        pieces = first.groupby("true")["record_id"].agg(list)
        split = pieces[pieces.map(len) > 1]
        silent_split = split[[not any(i in flagged for i in ids[1:]) for ids in split]]
        rates = [score["match_rate_by_wave"][w] / score["achievable_by_wave"][w]
                 for w in score["match_rate_by_wave"] if w != min(score["match_rate_by_wave"])
                 and score["achievable_by_wave"][w] > 0]
        rows.append({
            "seed": seed, "records": len(recs), "wrong_links": len(wrong),
            "silent_wrong_links": len(silent_wrong), "split_persons": len(split),
            "silent_splits": len(silent_split),
            "review_share": len(res.ambiguous) / len(recs),
            "listed_share": len(res.listed) / len(recs),
            "match_rate": float(np.mean(rates)) if rates else float("nan"),
            "recall": score["recall"],
        })
    return pd.DataFrame(rows)
