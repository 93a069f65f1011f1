"""Linking people across waves: rules, never-guess behaviour, decisions, simulation, speed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trackii_eval.errors import IngestError
from trackii_eval.ingest.linkage import (
    AMBIGUITY_REASONS,
    EXAMPLE_SGIC,
    CodeElement,
    CodeSpec,
    LinkageResult,
    link_records,
    read_decisions,
    score_linkage,
    simulate_sgic_panel,
)
from trackii_eval.ingest.pseudonym import PseudonymKey

KEY = PseudonymKey(bytes(range(32)))


def pseudo(person_key: str) -> str:
    return KEY.pseudonymize(person_key, namespace="linkage-person")


def records(*rows: tuple) -> pd.DataFrame:
    """Rows of (record_id, wave, code, side[, dialogue])."""
    full = [(*r, None) if len(r) == 4 else r for r in rows]
    return pd.DataFrame(full, columns=["record_id", "wave", "code", "side", "dialogue"])


def outcome(result: LinkageResult) -> dict[str, str]:
    """record_id -> method, or 'ambiguous:<reason>'."""
    out = dict(zip(result.links["record_id"], result.links["method"], strict=True))
    for r, reason in zip(result.ambiguous["record_id"], result.ambiguous["reason"], strict=True):
        out[r] = f"ambiguous:{reason}"
    return out


def naive_link(recs: pd.DataFrame) -> pd.Series:
    """What many studies do: the same code string (trimmed, case-folded) is the same person."""
    return pd.Series(recs["code"].str.strip().str.casefold().to_numpy(), index=recs["record_id"])


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "raw",
    ["MA05JE87", "ma05je87", " MA-05-JE-87 ", "ma 5 je 87", "MA.O5.JE.87", "MÁ05JÉ87",
     "ma\u200b05je87", "MA 05 JE 87", "ma5je87", "MA-5-JE-87"],
)
def test_parse_normalises_trivial_variants(raw: str) -> None:
    assert EXAMPLE_SGIC.parse(raw) == ("ma", "05", "je", "87")


def test_parse_fixes_confusions_only_where_unambiguous() -> None:
    assert EXAMPLE_SGIC.parse("M0O5JEI7") == ("mo", "05", "je", "17")
    assert EXAMPLE_SGIC.parse("M105JE87") == ("m1", "05", "je", "87")  # 1 could be i or l


@pytest.mark.parametrize("raw", [None, float("nan"), "", "MA05", "MA05JE8", "MA-05-JE-87-99", 5])
def test_parse_rejects_malformed(raw: object) -> None:
    assert EXAMPLE_SGIC.parse(raw) is None


def test_spec_from_config_forms() -> None:
    spec = CodeSpec.from_config([
        {"name": "mother", "length": 2, "kind": "letters"}, ("month", 2, "digits"),
        CodeElement("place", 2, "letters"), ("year", 2),
    ])
    assert spec.names == ["mother", "month", "place", "year"] and spec.total_length == 8
    with pytest.raises(IngestError, match="unique"):
        CodeSpec.from_config([("a", 1), ("a", 2)])
    with pytest.raises(IngestError, match="kind"):
        CodeElement("a", 2, "numbers")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- rules


def test_exact_links_within_side_and_dialogue_only() -> None:
    res = link_records(records(
        ("w1:1", 1, "MA05JE87", "North", "D1"),
        ("w2:1", 2, "ma-05-je-87", "North", "D1"),   # same block: exact
        ("w2:2", 2, "MA05JE87", "South", "D1"),      # other side: a different person
        ("w2:3", 2, "MA05JE87", "North", "D2"),      # other dialogue: a different person
        ("w2:4", 2, "MA05JE87", "North", None),      # comparison group: a different person
    ), EXAMPLE_SGIC)
    assert outcome(res) == {"w1:1": "new", "w2:1": "exact", "w2:2": "new", "w2:3": "new",
                            "w2:4": "new"}
    assert res.person["w1:1"] == res.person["w2:1"]
    assert len({res.person[r] for r in ["w1:1", "w2:2", "w2:3", "w2:4"]}) == 4
    assert res.stats["n_persons"] == 4 and res.stats["n_exact"] == 1


def test_fuzzy_link_names_the_element() -> None:
    res = link_records(records(
        ("w1:1", 1, "MA05JE87", "N"), ("w1:2", 1, "SA11TE62", "N"),
        ("w2:1", 2, "MA06JE87", "N"),   # month off by one
        ("w2:2", 2, "SA11TE26", "N"),   # year digits swapped
        ("w3:1", 3, "AM05JE87", "N"),   # letters swapped, person absent at wave 2 still found
    ), EXAMPLE_SGIC)
    links = res.links.set_index("record_id")
    assert links.loc["w2:1", "method"] == "fuzzy"
    assert links.loc["w2:1", "matched_element"] == "birth_month"
    assert links.loc["w2:2", "matched_element"] == "birth_year"
    assert links.loc["w3:1", "matched_element"] == "mother_first_name"
    assert res.person["w3:1"] == res.person["w1:1"]


def test_unique_candidate_one_element_away_is_linked_whatever_the_characters() -> None:
    # 05 vs 11 is no keyboard slip, but the person is the only one within one element:
    # keyboard rules may rank candidates, never exclude the only one.
    rows = [("w1:1", 1, "MA05JE87", "N"), ("w2:1", 2, "MA11JE87", "N")]
    res = link_records(records(*rows), EXAMPLE_SGIC, late_entrants=False)
    assert outcome(res)["w2:1"] == "fuzzy"
    assert res.person["w2:1"] == res.person["w1:1"]
    # If newcomers may join, a difference beyond a slip could be a newcomer: review.
    late = link_records(records(*rows), EXAMPLE_SGIC, late_entrants=True)
    assert outcome(late)["w2:1"] == "ambiguous:slip_or_newcomer"
    # With fuzzy matching off, the near record is listed for review, never a silent new person.
    off = link_records(records(("w1:1", 1, "MA05JE87", "N"), ("w2:1", 2, "MA11JE87", "N")),
                       EXAMPLE_SGIC, fuzzy=False)
    assert outcome(off)["w2:1"] == "ambiguous:possible_match"


def test_two_elements_differ_is_a_new_person() -> None:
    res = link_records(records(("w1:1", 1, "MA05JE87", "N"), ("w2:1", 2, "MA06JE88", "N")),
                       EXAMPLE_SGIC)
    assert outcome(res)["w2:1"] == "new"


def test_shared_code_is_never_guessed() -> None:
    # Two people of one block share a code by chance: later records with it are ambiguous.
    res = link_records(records(
        ("w1:1", 1, "MA05JE87", "N"), ("w1:2", 1, "MA05JE87", "N"),
        ("w2:1", 2, "MA05JE87", "N"),
    ), EXAMPLE_SGIC)
    assert outcome(res) == {"w1:1": "new", "w1:2": "new", "w2:1": "ambiguous:tied_candidates"}
    amb = res.ambiguous.iloc[0]
    assert set(amb["candidates"]) == {"w1:1", "w1:2"}
    assert pd.isna(res.person["w2:1"])
    assert res.person["w1:1"] != res.person["w1:2"]  # distinct keys despite one code


def test_two_records_of_one_wave_never_share_a_person() -> None:
    res = link_records(records(
        ("w1:1", 1, "MA05JE87", "N"),
        ("w2:1", 2, "MA05JE87", "N"), ("w2:2", 2, "ma 05 je 87", "N"),
    ), EXAMPLE_SGIC)
    assert outcome(res)["w2:1"] == outcome(res)["w2:2"] == "ambiguous:same_wave_conflict"


def test_fuzzy_claim_loses_to_exact_claim_without_guessing() -> None:
    res = link_records(records(
        ("w1:1", 1, "MA05JE87", "N"),
        ("w2:1", 2, "MA05JE87", "N"), ("w2:2", 2, "MA06JE87", "N"),
    ), EXAMPLE_SGIC)
    # w2:1 answers as the person; w2:2 is near that person only, so it is not a new person
    # either: it goes to review (a person answers a wave once).
    assert outcome(res) == {"w1:1": "new", "w2:1": "exact",
                            "w2:2": "ambiguous:same_wave_conflict"}


def test_record_between_two_persons_is_ambiguous() -> None:
    res = link_records(records(
        ("w1:1", 1, "MA05JE87", "N"), ("w1:2", 1, "MA07JE87", "N"),
        ("w2:1", 2, "MA06JE87", "N"),   # one slip from both: would merge them
    ), EXAMPLE_SGIC)
    assert outcome(res)["w2:1"] == "ambiguous:several_candidates"
    assert list(res.ambiguous.iloc[0]["differing_elements"]) == ["birth_month", "birth_month"]


def test_exact_match_with_an_absent_near_neighbour_is_ambiguous() -> None:
    rows = [("w1:1", 1, "MA05JE87", "N"), ("w1:2", 1, "MA06JE87", "N"),
            ("w2:1", 2, "MA05JE87", "N")]
    res = link_records(records(*rows), EXAMPLE_SGIC)
    # w2:1 may be w1:2's person with a slip in the month: w1:2's person did not answer.
    assert outcome(res)["w2:1"] == "ambiguous:near_neighbour"
    # Once the neighbour has answered this wave, the exact match is safe.
    res2 = link_records(records(*rows, ("w2:2", 2, "MA06JE87", "N")), EXAMPLE_SGIC)
    assert outcome(res2)["w2:1"] == outcome(res2)["w2:2"] == "exact"
    # One slip from one person and two elements from the other: linked fuzzily.
    res3 = link_records(records(*rows[:2], ("w2:1", 2, "MA06JE86", "N")), EXAMPLE_SGIC)
    assert outcome(res3)["w2:1"] == "fuzzy"  # 86 is one slip from 87; MA05JE87 is 2 elements off
    # A neighbour one element away (by more than a slip) with no record in this wave holds
    # the exact code back too; one whose own record of this wave is within reach does not.
    base = [("w1:1", 1, "MA05JE87", "N"), ("w1:2", 1, "MA05RZ87", "N"),
            ("w2:1", 2, "MA05JE87", "N")]
    assert outcome(link_records(records(*base), EXAMPLE_SGIC))["w2:1"] == \
        "ambiguous:near_neighbour"
    res4 = link_records(records(*base, ("w2:2", 2, "MA05RX87", "N")), EXAMPLE_SGIC)
    assert outcome(res4)["w2:1"] == "exact"


def test_malformed_code_is_listed_not_dropped() -> None:
    res = link_records(records(("w1:1", 1, "MA05", "N"), ("w1:2", 1, None, "N")), EXAMPLE_SGIC)
    assert outcome(res) == {"w1:1": "ambiguous:malformed_code",
                            "w1:2": "ambiguous:malformed_code"}


def test_participant_id_mode_is_exact_only() -> None:
    res = link_records(records(
        ("w1:1", 1, "ISR-0042", "N"), ("w2:1", 2, "isr 0042", "N"), ("w2:2", 2, "ISR-0043", "N"),
    ), None)
    assert outcome(res) == {"w1:1": "new", "w2:1": "exact", "w2:2": "new"}


def test_input_errors_name_the_problem() -> None:
    with pytest.raises(IngestError, match="missing column"):
        link_records(pd.DataFrame({"record_id": ["a"]}), EXAMPLE_SGIC)
    with pytest.raises(IngestError, match=r"unique; repeated: a"):
        link_records(records(("a", 1, "MA05JE87", "N"), ("a", 2, "MA05JE87", "N")), EXAMPLE_SGIC)
    with pytest.raises(IngestError, match=r"wave must be an integer.*b"):
        link_records(records(("a", 1, "X", "N"), ("b", 1.5, "X", "N")), EXAMPLE_SGIC)
    with pytest.raises(IngestError, match=r"side is empty.*a"):
        link_records(records(("a", 1, "MA05JE87", None)), EXAMPLE_SGIC)


def test_result_repr_shows_no_codes() -> None:
    res = link_records(records(("w1:1", 1, "MA05JE87", "N")), EXAMPLE_SGIC)
    assert "ma05je87" not in repr(res).lower() and "records=1" in repr(res)
    shown = res.with_pseudonyms(pseudo)
    assert shown.person["w1:1"].startswith("P-")
    assert "ma05je87" not in shown.links.to_csv().lower()


def test_row_order_does_not_matter_and_new_waves_do_not_change_old_links() -> None:
    recs, _ = simulate_sgic_panel(150, 4, 0.1, seed=3)
    res = link_records(recs, EXAMPLE_SGIC)
    shuffled = link_records(recs.sample(frac=1, random_state=1), EXAMPLE_SGIC)
    pd.testing.assert_series_equal(res.person, shuffled.person.reindex(res.person.index))
    first3 = link_records(recs[recs["wave"] <= 3], EXAMPLE_SGIC)
    pd.testing.assert_series_equal(first3.person, res.person.reindex(first3.person.index))


# ----------------------------------------------------------------------------- simulation


@pytest.mark.parametrize("seed", range(5))
def test_no_wrong_links_on_simulated_panel_and_better_than_naive(seed: int) -> None:
    recs, truth = simulate_sgic_panel(300, 5, typo_rate=0.08, seed=seed)
    res = link_records(recs, EXAMPLE_SGIC)
    ours = score_linkage(recs, res.person, truth)
    naive = score_linkage(recs, naive_link(recs), truth)
    exact_only = score_linkage(recs, link_records(recs, EXAMPLE_SGIC, fuzzy=False,
                                                  review_possible_matches=False).person, truth)
    assert ours["false_links"] == 0 and ours["false_pairs"] == 0
    assert naive["false_links"] > 0
    for wave in range(2, 6):
        rate = ours["match_rate_by_wave"][wave]
        assert rate > exact_only["match_rate_by_wave"][wave] > naive["match_rate_by_wave"][wave]
        assert rate >= 0.88 * ours["achievable_by_wave"][wave]  # attrition bounds the rate
        assert res.per_wave.set_index("wave").loc[wave, "match_rate"] == pytest.approx(
            rate, abs=0.05)  # reported rate (no truth needed) agrees with the true one
    assert ours["recall"] > 0.88
    # The rest is listed for the evaluator, not guessed.
    # (measured: about 4-6 % of records with 8 % typos and late joiners; see benchmarks)
    assert 0 < res.stats["n_ambiguous"] < 0.08 * len(recs)
    assert set(res.ambiguous["reason"]) <= set(AMBIGUITY_REASONS)


def test_stats_are_consistent() -> None:
    recs, _ = simulate_sgic_panel(200, 3, 0.08, seed=11)
    res = link_records(recs, EXAMPLE_SGIC)
    s = res.stats
    assert s["n_records"] == len(recs)
    assert s["n_exact"] + s["n_fuzzy"] + s["n_decision"] + s["n_new"] + s["n_ambiguous"] == len(
        recs)
    assert s["n_persons"] == s["n_new"]
    assert s["match_rate_by_wave"][1] == 1.0
    pw = res.per_wave.set_index("wave")
    assert list(pw["records"]) == recs.groupby("wave").size().tolist()
    assert (pw[["exact", "fuzzy", "decision", "new", "ambiguous"]].sum(axis=1)
            == pw["records"]).all()


def test_simulator_is_seeded() -> None:
    a, ta = simulate_sgic_panel(100, 3, 0.1, seed=5)
    b, tb = simulate_sgic_panel(100, 3, 0.1, seed=5)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_series_equal(ta, tb)
    assert list(ta.index) == list(a["record_id"])


# ----------------------------------------------------------------------------- review file


def _decide_with_truth(path: Path, truth: pd.Series) -> int:
    """Play the evaluator: fill every empty decision from the simulated truth."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    filled = 0
    for i, row in table.iterrows():
        if row["decision"]:
            continue
        candidates = row["candidates"].split(" ; ") if row["candidates"] else []
        same = [c for c in candidates if truth[c] == truth[row["record_id"]]]
        table.loc[i, "decision"] = same[0] if same else "NEW"
        filled += 1
    table.to_csv(path, index=False)
    return filled


def test_review_file_round_trip_resolves_ambiguity(tmp_path: Path) -> None:
    recs, truth = simulate_sgic_panel(300, 5, 0.08, seed=2)
    path = tmp_path / "linkage_review.csv"
    res = link_records(recs, EXAMPLE_SGIC)
    n_first = res.stats["n_ambiguous"]
    assert n_first > 0
    for _ in range(6):
        if not res.stats["n_ambiguous"]:
            break
        res.to_review_file(path, pseudo)
        assert _decide_with_truth(path, truth) > 0
        decisions = read_decisions(path)
        res = link_records(recs, EXAMPLE_SGIC, decisions=decisions)
    assert res.stats["n_ambiguous"] == 0
    assert score_linkage(recs, res.person, truth)["false_links"] == 0
    assert res.stats["n_decision"] > 0
    decided = res.links[res.links["decided"]]
    assert set(decided["record_id"]) == set(res.decisions["record_id"])
    # Regenerating the file keeps every decision.
    res.to_review_file(path, pseudo)
    again = read_decisions(path)
    assert dict(zip(again["record_id"], again["decision"], strict=True)) == dict(
        zip(res.decisions["record_id"], res.decisions["decision"], strict=True))


def test_review_file_shows_names_not_values(tmp_path: Path) -> None:
    recs, _ = simulate_sgic_panel(300, 5, 0.08, seed=4)
    res = link_records(recs, EXAMPLE_SGIC)
    path = res.to_review_file(tmp_path / "review.csv", pseudo)
    text = path.read_text(encoding="utf-8-sig")
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(table.columns) == ["record_id", "wave", "reason", "explanation",
                                   "differing_element", "candidates", "candidate_persons",
                                   "decision"]
    assert (table["decision"] == "").all()
    assert len(table) == res.stats["n_ambiguous"] + res.stats["n_listed"]  # held + listed
    lowered = text.lower()
    for raw in recs["code"]:
        parsed = EXAMPLE_SGIC.parse(raw)
        assert raw.lower() not in lowered
        if parsed:
            assert "".join(parsed) not in lowered
    assert "birth_month" in text or "mother_first_name" in text
    persons = [p for cell in table["candidate_persons"] for p in cell.split(" ; ") if p]
    assert persons and all(p.startswith("P-") or p == "(none yet)" for p in persons)


def test_review_file_is_never_clobbered(tmp_path: Path) -> None:
    recs = records(("w1:1", 1, "MA05JE87", "N"), ("w1:2", 1, "MA05JE87", "N"),
                   ("w2:1", 2, "MA05JE87", "N"))
    res = link_records(recs, EXAMPLE_SGIC)
    path = res.to_review_file(tmp_path / "review.csv", pseudo)
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    table.loc[0, "decision"] = "w1:2"
    table.to_csv(path, index=False)
    with pytest.raises(IngestError, match="not applied in this linkage run"):
        res.to_review_file(path, pseudo)  # stale result: would lose the decision
    resolved = link_records(recs, EXAMPLE_SGIC, decisions=read_decisions(path))
    assert resolved.person["w2:1"] == resolved.person["w1:2"]
    assert outcome(resolved)["w2:1"] == "decision"
    resolved.to_review_file(path, pseudo)  # now fine: the decision is carried over
    assert read_decisions(path)["decision"].tolist() == ["w1:2"]
    res.to_review_file(path, pseudo, overwrite=True)


def test_new_person_decision_and_decision_reversed_direction() -> None:
    recs = records(("w1:1", 1, "MA05JE87", "N"), ("w1:2", 1, "MA05JE87", "N"),
                   ("w2:1", 2, "MA05JE87", "N"), ("w3:1", 3, "XX01YY99", "N"))
    dec = pd.DataFrame({"record_id": ["w2:1", "w1:1"], "decision": ["new", "w3:1"]})
    res = link_records(recs, EXAMPLE_SGIC, decisions=dec)
    assert outcome(res)["w2:1"] == "new" and res.links.set_index("record_id").loc[
        "w2:1", "decided"]
    assert res.person["w3:1"] == res.person["w1:1"]  # the later record follows the earlier


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_decisions_errors_name_file_row_and_column(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="does not exist"):
        read_decisions(tmp_path / "none.csv")
    p = _write(tmp_path / "a.csv", "record_id,notes\nx,1\n")
    with pytest.raises(IngestError, match=r"a\.csv: missing column\(s\) decision"):
        read_decisions(p)
    p = _write(tmp_path / "b.csv", "record_id,decision\nw2:1,new\n,w1:1\n")
    with pytest.raises(IngestError, match=r"b\.csv:row 3: column record_id is empty"):
        read_decisions(p)
    p = _write(tmp_path / "c.csv", "record_id,decision\nw2:1,w2:1\n")
    with pytest.raises(IngestError, match=r"c\.csv:row 2: column decision links .* itself"):
        read_decisions(p)
    p = _write(tmp_path / "d.csv", "record_id,decision\nw2:1,new\nw2:1,w1:1\n")
    with pytest.raises(IngestError, match=r"d\.csv:row 3: column decision contradicts "
                                          r"d\.csv:row 2"):
        read_decisions(p)
    p = _write(tmp_path / "e.csv", "record_id,decision\nw2:1,  New \nw2:2,\n")
    out = read_decisions(p)
    assert out.to_dict("records") == [
        {"record_id": "w2:1", "decision": "new", "source": "e.csv:row 2"}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("record_id,decision\nw9:9,new\n", r"f\.csv:row 2: column record_id: record 'w9:9' is not"),
        ("record_id,decision\nw2:1,w9:9\n", r"f\.csv:row 2: column decision: 'w9:9' is neither"),
        ("record_id,decision\nw2:1,w2:2\n", r"f\.csv:row 2: .*two records of wave 2"),
        ("record_id,decision\nw2:1,w1:3\n", r"f\.csv:row 2: .*different sides"),
        ("record_id,decision\nw2:1,w1:1\nw2:2,w1:1\n", r"f\.csv:row 3: .*answers a wave once"),
        ("record_id,decision\nw2:1,new\nw1:1,w2:1\n", r"f\.csv:row 2 and f\.csv:row 3"),
    ],
)
def test_bad_decisions_are_reported_at_link_time(tmp_path: Path, text: str, message: str) -> None:
    recs = records(("w1:1", 1, "MA05JE87", "N"), ("w1:2", 1, "SA05JE87", "N"),
                   ("w1:3", 1, "MA05JE87", "S"),
                   ("w2:1", 2, "MA05JE87", "N"), ("w2:2", 2, "SA05JE87", "N"))
    decisions = read_decisions(_write(tmp_path / "f.csv", text))
    with pytest.raises(IngestError, match=message):
        link_records(recs, EXAMPLE_SGIC, decisions=decisions)


# ----------------------------------------------------------------------------- properties

_elements = st.tuples(st.sampled_from(["MA", "SA", "MI"]), st.sampled_from(["01", "02", "11"]),
                      st.sampled_from(["JE", "TE"]), st.sampled_from(["80", "81"]))
_code = st.one_of(_elements.map("".join), st.sampled_from(["", "MA01", "??"]))
_row = st.tuples(st.integers(1, 3), _code, st.sampled_from(["North", "South"]),
                 st.sampled_from([None, "D1", "D2"]))


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row, min_size=1, max_size=40), st.booleans(), st.booleans(), st.booleans())
def test_every_record_ends_in_exactly_one_state(rows: list[tuple], fuzzy: bool, review: bool,
                                                late: bool) -> None:
    recs = records(*[(f"r{i}", *row) for i, row in enumerate(rows)])
    res = link_records(recs, EXAMPLE_SGIC, fuzzy=fuzzy, review_possible_matches=review,
                       late_entrants=late)
    linked = set(res.links.loc[res.links["method"] != "new", "record_id"])
    new = set(res.links.loc[res.links["method"] == "new", "record_id"])
    amb = set(res.ambiguous["record_id"])
    assert linked | new | amb == set(recs["record_id"])
    assert not (linked & new) and not (linked & amb) and not (new & amb)
    assert len(res.links) + len(res.ambiguous) == len(recs)
    assert res.person[list(amb)].isna().all() and res.person[list(linked | new)].notna().all()
    assert set(res.listed["record_id"]) <= new  # listed records are stored as new persons
    # A person's records: one block, at most one per wave; ambiguous ones belong to nobody.
    joined = recs.set_index("record_id").assign(person=res.person).dropna(subset=["person"])
    for _, group in joined.groupby("person"):
        assert group["side"].nunique() == 1
        assert group["dialogue"].fillna("").nunique() == 1
        assert group["wave"].is_unique


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(_row, min_size=1, max_size=40))
def test_exact_matching_never_links_different_sides(rows: list[tuple]) -> None:
    recs = records(*[(f"r{i}", *row) for i, row in enumerate(rows)])
    res = link_records(recs, EXAMPLE_SGIC, fuzzy=False)
    assert set(res.links["method"]) <= {"exact", "new"}
    side = recs.set_index("record_id")["side"]
    for link in res.links[res.links["method"] == "exact"].itertuples():
        assert side[link.record_id] == side[link.matched_record]
    per_person = recs.assign(person=res.person.to_numpy()).dropna(subset=["person"])
    assert (per_person.groupby("person")["side"].nunique() == 1).all()


def test_new_people_after_baseline_are_listed_never_silent() -> None:
    # Two errors (baseline typo in the month, later typo in the year): nobody within one
    # element, so a new person; but never silently.
    rows = [("w1:1", 1, "MA05JE87", "N"), ("w2:1", 2, "MA06JE88", "N")]
    no_late = link_records(records(*rows), EXAMPLE_SGIC, late_entrants=False)
    assert outcome(no_late)["w2:1"] == "new"
    assert list(no_late.listed["reason"]) == ["unexpected_new"]
    assert list(no_late.per_wave["new_unexpected"]) == [0, 1]
    late = link_records(records(*rows), EXAMPLE_SGIC, late_entrants=True)
    assert list(late.listed["reason"]) == ["possible_split"]
    assert list(late.listed["candidates"]) == [("w1:1",)]
    assert list(late.per_wave["new_unexpected"]) == [0, 0]
    # A newcomer far from everyone is not listed when late entrants are expected.
    far = link_records(records(rows[0], ("w2:1", 2, "SA11TE62", "N")), EXAMPLE_SGIC,
                       late_entrants=True)
    assert far.listed.empty and outcome(far)["w2:1"] == "new"
