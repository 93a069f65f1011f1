"""One study time zone: every timestamp converted into it before any wave-window check; naive
times are study-local; both window edges tested (issue 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackii_eval import Study
from trackii_eval.errors import ConfigError

from .mini_study import make_study

WINDOW = "window: [2024-03-01, 2024-03-31]"


def _kobo(path: Path, times: list[str]) -> Path:
    rows = ["pid;arm;t1;t2;t3;_uuid;_submission_time"]
    rows += [f"K{i};comparison;1;2;3;u{i};{t}" for i, t in enumerate(times)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _generic(path: Path, times: list[str]) -> Path:
    rows = ["pid,arm,t1,t2,t3,submitted_at"]
    rows += [f"G{i},comparison,1,2,3,{t}" for i, t in enumerate(times)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _outside(tmp_path: Path, key, wave: Path, zone: str | None) -> list[int]:
    extra = f"timezone: {zone}\n" if zone else ""
    root = make_study(tmp_path / "s", [(wave, "2024-03-01")], extra_study=extra,
                      wave_options=[WINDOW])
    study = Study.load(root, out=tmp_path / "out")
    summary = study.ingest(key)
    study.close()
    bad = summary.problems[summary.problems["rule"] == "outside_wave_window"]
    return sorted(int(r) for r in bad["row"])


# Kobo writes _submission_time in UTC. In Beirut (UTC+2 in March before the DST switch) a
# UTC time of 22:30 on 29 Feb is 00:30 on 1 March: inside; 22:30 UTC on 31 March (UTC+3 after
# DST on the 31st) is 01:30 on 1 April: outside.
KOBO_TIMES = ["2024-02-29T22:30:00", "2024-02-29T21:30:00", "2024-03-31T20:30:00",
              "2024-03-31T21:30:00"]


def test_kobo_utc_times_converted_at_both_edges(tmp_path: Path, key) -> None:
    wave = _kobo(tmp_path / "k.csv", KOBO_TIMES)
    # rows 2..5: 00:30 Mar 1 (in), 23:30 Feb 29 (out), 23:30 Mar 31 (in), 00:30 Apr 1 (out)
    assert _outside(tmp_path / "beirut", key, wave, "Asia/Beirut") == [3, 5]


def test_default_zone_is_utc(tmp_path: Path, key) -> None:
    wave = _kobo(tmp_path / "k.csv", KOBO_TIMES)
    # in UTC: Feb 29 22:30 (out), Feb 29 21:30 (out), Mar 31 20:30 (in), Mar 31 21:30 (in)
    assert _outside(tmp_path / "utc", key, wave, None) == [2, 3]


def test_offsets_and_naive_times_in_a_generic_csv(tmp_path: Path, key) -> None:
    times = ["2024-03-01T00:10:00+02:00",  # 22:10 Feb 29 UTC; Beirut 00:10 Mar 1: in
             "2024-02-29 23:59:59",        # naive: study-local 23:59 Feb 29: out
             "2024-03-01 00:00:00",        # naive, first instant of the window: in
             "2024-03-31 23:59:59",        # naive, last instant: in
             "2024-04-01 00:00:00",        # naive, just after: out
             "2024-03-31T22:30:00Z"]       # 01:30 Apr 1 in Beirut (UTC+3): out
    wave = _generic(tmp_path / "g.csv", times)
    assert _outside(tmp_path / "beirut", key, wave, "Asia/Beirut") == [3, 6, 7]
    # the same file in a UTC study: the offset row is Feb 29 (out), the Z row Mar 31 (in)
    assert _outside(tmp_path / "utc", key, wave, "UTC") == [2, 3, 6]


def test_unknown_zone_is_a_config_error(tmp_path: Path) -> None:
    wave = _generic(tmp_path / "g.csv", ["2024-03-02 10:00"])
    root = make_study(tmp_path / "s", [(wave, "2024-03-01")],
                      extra_study="timezone: Mars/Olympus\n")
    with pytest.raises(ConfigError, match="unknown time zone"):
        Study.load(root, out=tmp_path / "out")


def _qualtrics(path: Path, times: list[str], zone: str) -> Path:
    cols = ["StartDate", "EndDate", "Status", "Progress", "Finished", "RecordedDate",
            "ResponseId", "pid", "arm", "t1", "t2", "t3"]
    imports = {"StartDate": "startDate", "EndDate": "endDate", "Status": "status",
               "Progress": "progress", "Finished": "finished", "RecordedDate": "recordedDate",
               "ResponseId": "_recordId"}
    def import_id(c: str) -> str:
        body = f'{{""ImportId"":""{imports.get(c, "QID" + c)}""'
        if c in ("StartDate", "EndDate", "RecordedDate"):
            body += f',""timeZone"":""{zone}""'
        return f'"{body}}}"'
    lines = [",".join(cols), ",".join(cols), ",".join(import_id(c) for c in cols)]
    for i, t in enumerate(times):
        lines.append(f"{t},{t},IP Address,100,True,{t},R_{i},Q{i},comparison,1,2,3")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_qualtrics_zone_converted_at_both_edges(tmp_path: Path, key) -> None:
    """Qualtrics writes times in the zone its ImportId row names (here Denver, UTC-7 in
    winter, UTC-6 after 10 March 2024). In a Beirut study: 15:30 Denver on 29 Feb is 00:30
    on 1 Mar in Beirut (in); 14:30 is 23:30 on 29 Feb (out); 15:30 Denver on 31 Mar is
    00:30 on 1 Apr in Beirut (out); 14:30 is 23:30 on 31 Mar (in)."""
    times = ["2024-02-29 15:30:00", "2024-02-29 14:30:00", "2024-03-31 15:30:00",
             "2024-03-31 14:30:00"]
    wave = _qualtrics(tmp_path / "q.csv", times, "America/Denver")
    # data rows start on row 4 (three header rows)
    assert _outside(tmp_path / "beirut", key, wave, "Asia/Beirut") == [5, 6]
    # in a Denver study the times are as written: 29 Feb out, 31 Mar in
    assert _outside(tmp_path / "denver", key, wave, "America/Denver") == [4, 5]
