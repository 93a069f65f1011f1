"""Write a small simulated study as three exports in three formats, as real teams receive them.

Wave 1 is a Qualtrics CSV export (three header rows; the participant code is question ``Q2``,
the items ``Q5_1``...); wave 2 an SPSS ``.sav`` (code ``pcode``; side numeric 1/2 with value
labels; variable labels carry the question texts); wave 3 a KoboToolbox CSV export with its
XLSForm (side as lower-case choice names). Arms are in the evaluator's own enrolment list.
Everything is simulated (seeded): two latent attitudes, one per construct, drive the items; the
third trust item is reverse keyed. Used by the tests, the README guide and the notebook.

Run ``python surveys/onboarding/generate.py`` to rewrite the committed exports in this folder
(the SPSS file records its creation time, so a rewrite is not byte for byte the same).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

N = 48
TRUST = {
    "trust_1": "Most people on the other side can be trusted.",
    "trust_2": "People on the other side would keep an agreement they signed.",
    "trust_3": "People on the other side are out to deceive us.",  # reverse keyed
}
CONTACT = {
    "contact_1": "I talk with people from the other side outside the workshops.",
    "contact_2": "I could call a counterpart on the other side in a crisis.",
    "contact_3": "My contacts with the other side are cooperative.",
}
QUALTRICS_ITEMS = dict(zip(["Q5_1", "Q5_2", "Q5_3", "Q6_1", "Q6_2", "Q6_3"],
                           [*TRUST, *CONTACT], strict=True))
TEXTS = {**TRUST, **CONTACT}


def _people(rng: np.random.Generator) -> pd.DataFrame:
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    codes = set()
    while len(codes) < N:
        codes.add("".join(rng.choice(list(letters), 2)) + f"{rng.integers(10, 99)}")
    people = pd.DataFrame({"code": sorted(codes)})
    people["side"] = np.where(np.arange(N) % 2 == 0, "A", "B")
    people["arm"] = np.where(np.arange(N) < N // 2, "dialogue", "comparison")
    people["trust"] = rng.normal(0, 1, N)
    people["contact"] = rng.normal(0, 1, N)
    return people


def _answers(rng: np.random.Generator, people: pd.DataFrame, wave: int) -> pd.DataFrame:
    gain = 0.4 * (wave - 1) * (people["arm"] == "dialogue")
    out = {}
    for item in TEXTS:
        latent = people["trust" if item.startswith("trust") else "contact"] + gain
        value = np.clip(np.rint(4 + 1.3 * latent + rng.normal(0, 0.7, len(people))), 1, 7)
        out[item] = (8 - value) if item == "trust_3" else value
    return pd.DataFrame(out).astype(int)


def write_exports(folder: Path, seed: int = 9) -> pd.DataFrame:
    """Write the three exports, the XLSForm and the enrolment list; return the truth.

    Returns
    -------
    DataFrame
        One row per person: code, side, arm (what a correct configuration must recover).
    """
    import pyreadstat

    rng = np.random.default_rng(seed)
    people = _people(rng)
    folder.mkdir(parents=True, exist_ok=True)

    # wave 1: Qualtrics CSV, March 2024
    a1 = _answers(rng, people, 1)
    names = ["StartDate", "EndDate", "Status", "IPAddress", "Progress", "Finished",
             "RecordedDate", "ResponseId", "Q1", "Q2", "Q3", *QUALTRICS_ITEMS]
    texts = ["Start Date", "End Date", "Response Type", "IP Address", "Progress", "Finished",
             "Recorded Date", "Response ID", "Your name (optional)", "Your participant code",
             "Which side do you belong to?", *(TEXTS[i] for i in QUALTRICS_ITEMS.values())]
    imports = [{"ImportId": k} for k in ("startDate", "endDate", "status", "ipAddress",
                                         "progress", "finished", "recordedDate", "_recordId")]
    imports += [{"ImportId": f"QID{i}"} for i in range(1, 4)]
    imports += [{"ImportId": f"QID{k.replace('Q', '')}"} for k in QUALTRICS_ITEMS]
    rows = []
    for i, p in people.iterrows():
        day = f"2024-03-{1 + i % 20:02d}"
        rows.append([f"{day} 09:00:00", f"{day} 09:10:00", "IP Address",
                     f"192.0.2.{i + 1}", "100", "True", f"{day} 09:10:01", f"R_{i:015d}",
                     f"Invented Person {i}", p["code"], p["side"],
                     *(str(a1.loc[i, item]) for item in QUALTRICS_ITEMS.values())])
    frame = pd.DataFrame([texts, [json.dumps(x) for x in imports], *rows], columns=names)
    frame.to_csv(folder / "wave1_qualtrics.csv", index=False)

    # wave 2: SPSS, March 2025 (the last four people did not answer)
    a2 = _answers(rng, people, 2)
    keep = people.index[:-4]
    sav = pd.DataFrame({
        "pcode": people.loc[keep, "code"],
        "side": np.where(people.loc[keep, "side"] == "A", 1.0, 2.0),
        "submitted_at": [f"2025-03-{1 + i % 20:02d}" for i in keep],
        **{item: a2.loc[keep, item].astype(float) for item in TEXTS},
    })
    pyreadstat.write_sav(
        sav, str(folder / "wave2_spss.sav"),
        column_labels={"pcode": "Participant code", "side": "Side",
                       "submitted_at": "Date of interview", **TEXTS},
        variable_value_labels={"side": {1.0: "A", 2.0: "B"},
                               **{i: {1.0: "Strongly disagree", 7.0: "Strongly agree"}
                                  for i in TEXTS}},
    )

    # wave 3: KoboToolbox CSV with its XLSForm, March 2026
    a3 = _answers(rng, people, 3)
    kobo = pd.DataFrame({
        "start": [f"2026-03-{1 + i % 20:02d}T10:00:00" for i in people.index],
        "group_id/pcode": people["code"],
        "group_id/side": people["side"].str.lower(),
        **{f"group_att/{item}": a3[item] for item in TEXTS},
        "_id": np.arange(1000, 1000 + N),
        "_uuid": [f"00000000-0000-4000-8000-{i:012d}" for i in people.index],
        "_submission_time": [f"2026-03-{1 + i % 20:02d}T10:20:00" for i in people.index],
    })
    kobo.to_csv(folder / "wave3_kobo.csv", index=False, sep=";")
    survey = pd.DataFrame({
        "type": ["begin_group", "text", "select_one sides", "end_group", "begin_group",
                 *["select_one agree7"] * len(TEXTS), "end_group"],
        "name": ["group_id", "pcode", "side", "", "group_att", *TEXTS, ""],
        "label": ["Identification", "Your participant code", "Your side", "", "Attitudes",
                  *TEXTS.values(), ""],
    })
    choices = pd.DataFrame({
        "list_name": ["sides", "sides", *["agree7"] * 7],
        "name": ["a", "b", *map(str, range(1, 8))],
        "label": ["A", "B", "Strongly disagree", "Disagree", "Somewhat disagree", "Neither",
                  "Somewhat agree", "Agree", "Strongly agree"],
    })
    with pd.ExcelWriter(folder / "wave3_xlsform.xlsx") as writer:
        survey.to_excel(writer, sheet_name="survey", index=False)
        choices.to_excel(writer, sheet_name="choices", index=False)

    # the evaluator's enrolment list: code -> arm
    people[["code", "arm"]].to_csv(folder / "enrolment_list.csv", index=False)
    return people[["code", "side", "arm"]]


if __name__ == "__main__":
    write_exports(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
