"""The SQLite apply path's INSERT parameters (store/dbapi.py): one new job's values in the
order of the statement's columns, the JSON columns encoded."""

from __future__ import annotations

from phalanx.store import dbapi


def test_job_values_follow_the_insert_columns_with_json_encoded() -> None:
    row: dict[str, object] = {c: f"value of {c}" for c in dbapi._JOB_COLUMNS}
    row |= {
        "manifest": {"kind": "Job", "metadata": {"name": "a"}},
        "reason_facts": {},
        "labels": {"team": "x"},
        "annotations": {},
        "owner_refs": [{"kind": "PipelineRun", "name": "r"}],
        "conditions": [],
    }
    expected = tuple(
        dbapi._json(row[c]) if c in dbapi._JSON_COLUMNS else row[c] for c in dbapi._JOB_COLUMNS
    )
    assert dbapi._job_values(row) == expected
    assert expected[dbapi._JOB_COLUMNS.index("labels")] == '{"team":"x"}'
    assert expected[dbapi._JOB_COLUMNS.index("name")] == "value of name"
