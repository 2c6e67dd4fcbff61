"""Feature store: round trip of every dtype, schema-version isolation, no duplicates, atomic parts."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adlens.features.schema import (
    FEATURE_SCHEMA_VERSION,
    FeatureSpec,
    schema_fingerprint,
)
from adlens.features.store import FeatureStore, version_slug

SPECS = (
    FeatureSpec("n", "int32", "a count"),
    FeatureSpec("x", "float32", "a score", True),
    FeatureSpec("flag", "bool", "a flag", True),
    FeatureSpec("cat", "category", "a category", True),
    FeatureSpec("txt", "string", "free text", True),
    FeatureSpec("ents", "list[string]", "names", True),
    FeatureSpec("vec", "vector[3]", "a small vector", True),
)


def row(key, n=1, x=0.5, flag=True, cat="a", txt="hello", ents=("apple",), vec=(1.0, 0.0, 0.0)):
    return {"key": key, "n": n, "x": x, "flag": flag, "cat": cat, "txt": txt,
            "ents": None if ents is None else list(ents), "vec": None if vec is None else np.asarray(vec, np.float32)}


@pytest.fixture
def fs(tmp_path):
    return FeatureStore(tmp_path / "features")


def test_round_trip_every_dtype_and_nulls(fs):
    fs.put("ads", [row("k1"), row("k2", n=0, x=float("nan"), flag=None, cat=None, txt=None, ents=None, vec=None)], SPECS)
    r1, r2 = fs.rows("ads", SPECS, keys=["k1", "k2"])
    assert r1["key"] == "k1" and r1["n"] == 1 and r1["flag"] is True and r1["cat"] == "a" and r1["ents"] == ["apple"]
    assert r1["x"] == pytest.approx(0.5)
    assert r1["vec"].dtype == np.float32 and r1["vec"].tolist() == [1.0, 0.0, 0.0]
    # NaN goes to Parquet as null and comes back as NaN (the extractors' convention); other nulls as None
    assert math.isnan(r2["x"]) and r2["flag"] is None and r2["cat"] is None and r2["ents"] is None and r2["vec"] is None
    t = fs.table("ads", SPECS)
    assert t.column("x").null_count == 1  # stored as a real null: DuckDB/Spark count it as missing
    vt = t.schema.field("vec").type
    assert vt.list_size == 3 and vt.value_type == pa.float32()
    # rows come back in the order asked for
    assert [r["key"] for r in fs.rows("ads", SPECS, keys=["k2", "k1", "nope"])] == ["k2", "k1"]


def test_schema_version_goes_into_folder_and_metadata_and_isolates_rows(fs):
    part = fs.put("ads", [row("k1")], SPECS)
    assert part.parent.parent.name == version_slug(FEATURE_SCHEMA_VERSION) == "features_1.0"
    meta = pq.read_schema(part).metadata
    assert meta[b"adlens.feature_schema_version"] == FEATURE_SCHEMA_VERSION.encode()
    assert meta[b"adlens.schema_fingerprint"] == schema_fingerprint(SPECS).encode()
    other = FeatureStore(fs.root, schema_version="features/2.0")
    assert other.keys("ads") == set() and other.missing("ads", ["k1"]) == ["k1"]
    other.put("ads", [row("k1", n=7)], SPECS)
    assert fs.rows("ads", SPECS)[0]["n"] == 1 and other.rows("ads", SPECS)[0]["n"] == 7  # never mixed


def test_changed_columns_without_version_bump_are_not_read(fs):
    fs.put("ads", [row("k1")], SPECS)
    changed = SPECS[:-1] + (FeatureSpec("vec", "vector[4]", "a bigger vector", True),)
    assert fs.keys("ads", SPECS) == {"k1"}
    assert fs.keys("ads", changed) == set()  # different fingerprint: recomputed, never mis-read
    assert fs.table("ads", changed).num_rows == 0


def test_rewriting_a_key_never_duplicates_it_first_write_wins(fs):
    fs.put("ads", [row("k1", n=1), row("k2")], SPECS)
    fs.put("ads", [row("k1", n=2), row("k3")], SPECS)
    t = fs.table("ads", SPECS)
    assert sorted(t.column("key").to_pylist()) == ["k1", "k2", "k3"]
    assert fs.rows("ads", SPECS, keys=["k1"])[0]["n"] == 1
    assert fs.missing("ads", ["k3", "k4", "k4", "k1"], SPECS) == ["k4"]
    # compaction merges the parts without changing what is read
    fs.compact("ads", SPECS)
    assert len(fs.parts("ads", SPECS)) == 1
    assert fs.rows("ads", SPECS, keys=["k1", "k2", "k3"]) and fs.rows("ads", SPECS, keys=["k1"])[0]["n"] == 1


def test_half_written_part_from_a_crash_is_ignored(fs):
    fs.put("ads", [row("k1")], SPECS)
    d = fs.dir("ads")
    (d / ".tmp-abc.parquet").write_bytes(b"PAR1 half a file")  # what a crash mid-write leaves
    assert fs.keys("ads", SPECS) == {"k1"}
    assert fs.table("ads", SPECS).num_rows == 1


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"n": "three"}, "'n'"),
        ({"vec": np.zeros(5, np.float32)}, "'vec'"),
        ({"ents": "apple"}, "'ents'"),  # a bare string must not become ['a', 'p', 'p', 'l', 'e']
        ({"x": "high"}, "'x'"),
    ],
)
def test_invalid_values_name_the_column(fs, bad, fragment):
    r = {**row("k1"), **bad}
    with pytest.raises(ValueError, match=fragment):
        fs.put("ads", [r], SPECS)
    assert fs.keys("ads") == set()  # nothing half-written


def test_missing_column_or_key_is_rejected(fs):
    r = row("k1")
    del r["cat"]
    with pytest.raises(ValueError, match="cat"):
        fs.put("ads", [r], SPECS)
    with pytest.raises(ValueError, match="no key"):
        fs.put("ads", [{**row("k1"), "key": ""}], SPECS)
    with pytest.raises(ValueError, match="invalid kind"):
        fs.put("../x", [row("k1")], SPECS)
    assert fs.put("ads", [], SPECS) is None
