"""OULAD (real data, CC-BY 4.0; Kuzilek, Hlosta, Zdrahal 2017) -> event files.

The first few thousand click rows of the real file are converted and checked against the
source rows read independently here; small synthetic files cover the churn-label rules and
the error paths.
"""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.datasets.oulad import (
    CLICK_FILE,
    DEFAULT_SRC,
    convert_oulad,
    iter_oulad_events,
    presentation_start_ms,
)
from schemas.base import format_ts, parse, to_dict
from schemas.codec import KIND_TYPES

DAY_MS = 86_400_000
LIMIT = 4000

needs_oulad = pytest.mark.skipif(not (DEFAULT_SRC / CLICK_FILE).is_file(), reason=f"OULAD not in {DEFAULT_SRC}")


def read_source(name: str, src: Path = DEFAULT_SRC, limit: int | None = None) -> list[dict[str, str]]:
    with gzip.open(src / name, "rt", encoding="utf-8", newline="") as fh:
        rows = []
        for i, row in enumerate(csv.DictReader(fh)):
            if limit is not None and i >= limit:
                break
            rows.append(row)
        return rows


def read_lines(out: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (out / "events.jsonl").read_bytes().splitlines()]


def read_labels(out: Path) -> dict[str, str]:
    with (out / "labels.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        assert next(reader) == ["user_id", "churned_at"]
        return dict((u, t) for u, t in reader)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    if not (DEFAULT_SRC / CLICK_FILE).is_file():
        pytest.skip(f"OULAD not in {DEFAULT_SRC}")
    out = tmp_path_factory.mktemp("oulad")
    summary = convert_oulad(DEFAULT_SRC, out, limit_rows=LIMIT)
    return out, summary, read_lines(out)


@pytest.fixture(scope="module")
def clicks() -> list[dict[str, str]]:
    return read_source(CLICK_FILE, limit=LIMIT)


# ---------------------------------------------------------------------------------------------
# the real data


@needs_oulad
def test_counts_match_the_source_rows(converted, clicks):
    out, summary, lines = converted
    presentations = {(r["code_module"], r["code_presentation"]) for r in clicks}
    regs = [r for r in read_source("studentRegistration.csv.gz")
            if (r["code_module"], r["code_presentation"]) in presentations]
    kinds = defaultdict(int)
    for d in lines:
        kinds[d["type"]] += 1
    assert kinds["view"] == summary["views"] == len(clicks) == LIMIT
    assert kinds["purchase"] == summary["purchases"] == len(regs)
    assert kinds["course"] == summary["courses"] == len({r["id_site"] for r in clicks})
    users = {f"s{r['id_student']}" for r in regs} | {f"s{r['id_student']}" for r in clicks}
    assert summary["users"] == len(users) == len(read_labels(out))
    assert set(summary["presentations"]) == {f"{m}-{p}" for m, p in presentations}
    assert summary["withdrawn_registrations"] == sum(1 for r in regs if r["date_unregistration"])
    on_disk = orjson.loads((out / "summary.json").read_bytes())
    assert {k: on_disk[k] for k in ("users", "courses", "views", "purchases", "withdrawn_users")} == {
        k: summary[k] for k in ("users", "courses", "views", "purchases", "withdrawn_users")
    }
    assert on_disk["time_range"]["first_event"] == format_ts(summary["time_range"]["first_event_ms"])


@needs_oulad
def test_catalogue_first_then_non_decreasing_time(converted):
    _, _, lines = converted
    kinds = [d["type"] for d in lines]
    n_courses = kinds.count("course")
    assert set(kinds[:n_courses]) == {"course"}
    assert "course" not in kinds[n_courses:]
    ts = [d["ts"] for d in lines]
    assert all(isinstance(t, int) for t in ts)
    assert all(a <= b for a, b in zip(ts, ts[1:], strict=False))


@needs_oulad
def test_every_view_course_is_in_the_catalogue_with_its_vle_activity(converted):
    _, _, lines = converted
    catalogue = {d["course_id"]: d for d in lines if d["type"] == "course"}
    vle = {r["id_site"]: r for r in read_source("vle.csv.gz")}
    viewed = {d["course_id"] for d in lines if d["type"] == "view"}
    assert viewed == set(catalogue)
    first_view: dict[str, int] = {}
    for d in lines:
        if d["type"] == "view":
            first_view.setdefault(d["course_id"], d["ts"])
    for cid, c in catalogue.items():
        site = cid.removeprefix("site-")
        v = vle[site]
        start = presentation_start_ms(v["code_presentation"])
        assert c["category"] == f"{v['code_module']}/{v['activity_type']}"
        assert c["tags"] == [v["activity_type"], v["code_module"]]
        assert c["title"] == f"{v['activity_type']} {site} ({v['code_module']})"
        assert c["price"] == 0.0
        assert c["published_at"] == min(start, first_view[cid])


@needs_oulad
def test_views_follow_their_click_rows(converted, clicks):
    _, _, lines = converted
    views = [d for d in lines if d["type"] == "view"]
    by_row = {int(d["event_id"].removeprefix("v-")): d for d in views}
    assert sorted(by_row) == list(range(LIMIT))
    for i, r in enumerate(clicks):
        d = by_row[i]
        start = presentation_start_ms(r["code_presentation"])
        assert d["user_id"] == f"s{r['id_student']}"
        assert d["course_id"] == f"site-{r['id_site']}"
        assert d["lesson_id"] == f"{r['code_module']}-{r['code_presentation']}"
        assert d["watch_seconds"] == 60.0 * int(r["sum_click"])
        day_start = start + int(r["date"]) * DAY_MS
        assert day_start + 8 * 3_600_000 <= d["ts"] < day_start + DAY_MS
    # rows of one student-day keep the file order, strictly
    per_user_day: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i in range(LIMIT):
        d = by_row[i]
        per_user_day[(d["user_id"], d["ts"] // DAY_MS)].append(d["ts"])
    for ts in per_user_day.values():
        assert all(a < b for a, b in zip(ts, ts[1:], strict=False))


@needs_oulad
def test_progress_is_cumulative_clicks_and_never_decreases(converted):
    _, _, lines = converted
    total: dict[tuple[str, str], int] = defaultdict(int)
    last: dict[tuple[str, str], float] = {}
    for d in lines:
        if d["type"] != "view":
            continue
        key = (d["user_id"], d["course_id"])
        total[key] += round(d["watch_seconds"] / 60)
        assert d["progress"] == pytest.approx(min(1.0, total[key] / 10))
        assert d["progress"] >= last.get(key, 0.0)
        last[key] = d["progress"]


@needs_oulad
def test_registrations_are_free_purchases_of_the_presentation(converted, clicks):
    _, _, lines = converted
    presentations = {(r["code_module"], r["code_presentation"]) for r in clicks}
    regs = {
        f"reg-{r['code_module']}-{r['code_presentation']}-{r['id_student']}": r
        for r in read_source("studentRegistration.csv.gz")
        if (r["code_module"], r["code_presentation"]) in presentations
    }
    purchases = [d for d in lines if d["type"] == "purchase"]
    assert {d["event_id"] for d in purchases} == set(regs)
    for d in purchases:
        r = regs[d["event_id"]]
        start = presentation_start_ms(r["code_presentation"])
        assert d["order_id"] == d["event_id"]
        assert d["course_id"] == f"{r['code_module']}-{r['code_presentation']}"
        assert (d["amount"], d["currency"]) == (0.0, "GBP")
        if r["date_registration"]:
            assert d["ts"] == start + int(r["date_registration"]) * DAY_MS


@needs_oulad
def test_labels_match_the_unregistration_days(converted, clicks):
    out, summary, _ = converted
    presentations = {(r["code_module"], r["code_presentation"]) for r in clicks}
    regs = [r for r in read_source("studentRegistration.csv.gz")
            if (r["code_module"], r["code_presentation"]) in presentations]
    labels = read_labels(out)
    per_student: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in regs:
        per_student[r["id_student"]].append(r)
    single = {s: rs[0] for s, rs in per_student.items() if len(rs) == 1}
    withdrawn = [s for s, r in single.items() if r["date_unregistration"]]
    stayed = [s for s, r in single.items() if not r["date_unregistration"]]
    assert len(withdrawn) >= 20 and stayed
    for s in withdrawn:
        r = single[s]
        expected = presentation_start_ms(r["code_presentation"]) + int(r["date_unregistration"]) * DAY_MS
        assert labels[f"s{s}"] == format_ts(expected)
    for s in stayed:
        assert labels[f"s{s}"] == ""
    assert summary["withdrawn_users"] == sum(1 for t in labels.values() if t)


@needs_oulad
def test_attribution_names_the_dataset_and_licence(converted):
    out, summary, _ = converted
    text = (out / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "CC-BY 4.0" in text
    assert "Kuzilek" in text and "Scientific Data 4, 170171 (2017)" in text
    assert "watch_seconds" in text and "churned_at" in text  # the mapping is described
    assert "CC-BY 4.0" in summary["licence"] and "Kuzilek" in summary["citation"]


@needs_oulad
def test_every_line_parses_back_to_the_same_record(converted):
    out, _, _ = converted
    for line in (out / "events.jsonl").read_bytes().splitlines():
        data = orjson.loads(line)
        cls = KIND_TYPES[data.pop("type")]
        rec = parse(cls, data)
        assert orjson.dumps({"type": rec.kind, **to_dict(rec)}) == line


@needs_oulad
def test_iterator_yields_what_is_written(converted):
    _, _, lines = converted
    recs = list(iter_oulad_events(DEFAULT_SRC, limit_rows=LIMIT))
    assert [{"type": r.kind, **to_dict(r)} for r in recs] == lines


# ---------------------------------------------------------------------------------------------
# synthetic files: churn rules, edge cases, errors


def write_gz(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def make_oulad(src: Path, clicks: list[list[Any]], regs: list[list[Any]]) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    write_gz(src / "courses.csv.gz", ["code_module", "code_presentation", "module_presentation_length"],
             [["AAA", "2013J", 268], ["AAA", "2014J", 269], ["BBB", "2013B", 240]])
    write_gz(src / "vle.csv.gz",
             ["id_site", "code_module", "code_presentation", "activity_type", "week_from", "week_to"],
             [[1, "AAA", "2013J", "resource", "", ""], [2, "AAA", "2014J", "quiz", "", ""],
              [3, "BBB", "2013B", "forumng", "", ""]])
    write_gz(src / "studentRegistration.csv.gz",
             ["code_module", "code_presentation", "id_student", "date_registration", "date_unregistration"], regs)
    write_gz(src / CLICK_FILE,
             ["code_module", "code_presentation", "id_student", "id_site", "date", "sum_click"], clicks)
    return src


CLICKS = [
    ["BBB", "2013B", 7, 3, -5, 2],
    ["AAA", "2013J", 1, 1, 0, 4],
    ["AAA", "2013J", 1, 1, 0, 3],
    ["AAA", "2013J", 1, 1, 3, 5],
    ["AAA", "2013J", 2, 1, 1, 1],
    ["AAA", "2014J", 1, 2, 2, 1],
    ["AAA", "2014J", 3, 2, 10, 1],
    ["AAA", "2014J", 4, 2, 10, 1],
]
REGS = [
    ["AAA", "2013J", 1, -30, 20],   # withdrew ...
    ["AAA", "2014J", 1, -10, ""],   # ... and came back next year: not churned
    ["AAA", "2013J", 2, -5, 5],     # withdrew twice: the latest counts
    ["AAA", "2014J", 2, -5, 40],
    ["AAA", "2014J", 3, "", -3],    # no registration day, withdrew before the start
    ["AAA", "2014J", 4, -1, ""],    # never withdrew
    ["AAA", "2014J", 5, -20, -2],   # withdrew before the start, never clicked
    ["BBB", "2013B", 7, -9, ""],
    ["CCC", "2014J", 8, -9, 3],     # presentation without clicks: not converted
]


def test_presentation_start():
    assert format_ts(presentation_start_ms("2013B")) == "2013-02-01T00:00:00.000Z"
    assert format_ts(presentation_start_ms("2014J")) == "2014-10-01T00:00:00.000Z"
    with pytest.raises(ValueError, match="YYYYB"):
        presentation_start_ms("2014X")


def test_churn_labels_follow_withdrawals_and_returns(tmp_path):
    src = make_oulad(tmp_path / "src", CLICKS, REGS)
    summary = convert_oulad(src, tmp_path / "out")
    labels = read_labels(tmp_path / "out")
    j13, j14 = presentation_start_ms("2013J"), presentation_start_ms("2014J")
    assert labels == {
        "s1": "",
        "s2": format_ts(j14 + 40 * DAY_MS),
        "s3": format_ts(j14 - 3 * DAY_MS),
        "s4": "",
        "s5": format_ts(j14 - 2 * DAY_MS),
        "s7": "",
    }
    assert summary["presentations"].keys() == {"AAA-2013J", "AAA-2014J", "BBB-2013B"}
    assert (summary["users"], summary["purchases"], summary["views"], summary["courses"]) == (6, 8, 8, 3)
    assert summary["withdrawn_users"] == 3 and summary["withdrew_then_returned_users"] == 1
    d = summary["diagnostics"]
    assert d["withdrawals_before_start"] == 2 and d["withdrawn_users_without_clicks"] == 1
    assert d["missing_date_registration"] == 1
    lines = read_lines(tmp_path / "out")
    reg3 = next(x for x in lines if x.get("event_id") == "reg-AAA-2014J-3")
    assert reg3["ts"] == j14 - 3 * DAY_MS  # clamped to the withdrawal, not after it
    s1 = [x for x in lines if x["type"] == "view" and x["user_id"] == "s1" and x["course_id"] == "site-1"]
    assert [x["ts"] - j13 for x in s1] == [8 * 3_600_000, 8 * 3_600_000 + 60_000, 3 * DAY_MS + 8 * 3_600_000]
    assert [x["progress"] for x in s1] == [0.4, 0.7, 1.0]
    assert "CCC-2014J" not in {x.get("course_id") for x in lines}


def test_conversion_is_deterministic(tmp_path):
    src = make_oulad(tmp_path / "src", CLICKS, REGS)
    convert_oulad(src, tmp_path / "a")
    convert_oulad(src, tmp_path / "b", limit_rows=100)
    for name in ("events.jsonl", "labels.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_limit_rows_converts_only_the_presentations_read(tmp_path):
    src = make_oulad(tmp_path / "src", CLICKS, REGS)
    summary = convert_oulad(src, tmp_path / "out", limit_rows=1)
    assert list(summary["presentations"]) == ["BBB-2013B"]
    assert (summary["views"], summary["purchases"], summary["users"]) == (1, 1, 1)


def test_missing_files_and_bad_arguments(tmp_path):
    src = make_oulad(tmp_path / "src", CLICKS, REGS)
    with pytest.raises(ValueError, match="limit_rows"):
        convert_oulad(src, tmp_path / "out", limit_rows=0)
    (src / "vle.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"vle\.csv\.gz"):
        convert_oulad(src, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        convert_oulad(tmp_path / "nowhere", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_values_name_file_and_line(tmp_path):
    src = make_oulad(tmp_path / "src", [*CLICKS[:2], ["AAA", "2013J", 1, 1, "x", 1]], REGS)
    with pytest.raises(ValueError, match=rf"{CLICK_FILE}:4"):
        convert_oulad(src, tmp_path / "out")
    write_gz(src / "courses.csv.gz", ["code_module", "length"], [["AAA", 1]])
    with pytest.raises(ValueError, match="missing column"):
        convert_oulad(src, tmp_path / "out")
