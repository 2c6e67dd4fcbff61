
import sqlalchemy as sa

from adlens.dedup.lookup import check_images
from adlens.ingest.ads import ingest_ads
from adlens.store import schema
from adlens.store.ledger import duplicate_groups
from adlens.workspace import open_workspace

from conftest import banner, encode


def _ledger(ws):
    with ws.engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.creatives.c.ad_id, schema.ledger)
            .join(schema.ledger, schema.ledger.c.image_id == schema.creatives.c.image_id)
        ).mappings().all()
    return {r["ad_id"]: dict(r) for r in rows}


def _manifest(tmp_path, rows, name="ads.csv"):
    m = tmp_path / name
    m.write_text("path,ad_id,day\n" + "".join(f"{p},{a},{d}\n" for p, a, d in rows))
    return m


def test_near_duplicates_grouped_across_days_with_canonical(ws, tmp_path):
    a = banner(100)
    (tmp_path / "a.jpg").write_bytes(encode(a, quality=92))
    (tmp_path / "a_q60.jpg").write_bytes(encode(a, quality=60))  # re-encoded
    (tmp_path / "a_big.png").write_bytes(encode(a.resize((600, 500)), "PNG"))  # larger copy
    (tmp_path / "b.jpg").write_bytes(encode(banner(101)))  # unrelated
    ingest_ads(ws, _manifest(tmp_path, [("a.jpg", "A", "2026-11-02"), ("b.jpg", "B", "2026-11-02")]))
    ingest_ads(ws, _manifest(tmp_path, [("a_q60.jpg", "A2", "2026-11-03")], "d2.csv"))
    led = _ledger(ws)
    assert led["A2"]["canonical_id"] == led["A"]["image_id"]  # earliest seen wins
    assert led["B"]["canonical_id"] == led["B"]["image_id"]
    # the larger copy seen on the same day as A takes over as canonical (same day -> largest)
    ingest_ads(ws, _manifest(tmp_path, [("a_big.png", "A3", "2026-11-02")], "d3.csv"))
    led = _ledger(ws)
    assert {led[k]["canonical_id"] for k in ("A", "A2", "A3")} == {led["A3"]["image_id"]}
    groups = duplicate_groups(ws.engine)
    assert len(groups) == 1 and groups[0]["canonical_ad_id"] == "A3"
    assert sorted(m["ad_id"] for m in groups[0]["members"]) == ["A", "A2", "A3"]


def test_sightings_first_last_times_seen(ws, tmp_path):
    (tmp_path / "a.jpg").write_bytes(encode(banner(110)))
    for day in ("2026-11-03", "2026-11-01", "2026-11-05", "2026-11-05"):
        ingest_ads(ws, _manifest(tmp_path, [("a.jpg", "A", day)], f"{day}.csv"))
    row = _ledger(ws)["A"]
    assert (row["first_seen"], row["last_seen"], row["times_seen"]) == ("2026-11-01", "2026-11-05", 3)


def test_ledger_survives_restart_and_index_rebuild(ws, tmp_path, settings):
    img = banner(120)
    (tmp_path / "a.jpg").write_bytes(encode(img))
    ingest_ads(ws, _manifest(tmp_path, [("a.jpg", "A", "2026-11-01")]))
    ws.close()
    (tmp_path / "q.jpg").write_bytes(encode(img.resize((240, 200)), quality=70))
    ws2 = open_workspace(settings.workspace, settings)
    r = check_images(ws2, [tmp_path / "q.jpg"])[0]
    assert r["status"] == "duplicate" and r["matches"][0]["ad_ids"] == ["A"]
    index_file = ws2.artifacts / "dedup" / "phash.index"
    assert index_file.exists()
    index_file.unlink()  # a lost artifact is rebuilt from the catalog
    ws2.close()
    ws3 = open_workspace(settings.workspace, settings)
    assert check_images(ws3, [tmp_path / "q.jpg"])[0]["status"] == "duplicate"
    ws3.close()


def test_check_does_not_ingest_and_reports_bad_files(ws, tmp_path):
    (tmp_path / "a.jpg").write_bytes(encode(banner(130)))
    ingest_ads(ws, _manifest(tmp_path, [("a.jpg", "A", "2026-11-01")]))
    (tmp_path / "new.jpg").write_bytes(encode(banner(131)))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    res = check_images(ws, [tmp_path / "a.jpg", tmp_path / "new.jpg", tmp_path / "broken.jpg", tmp_path / "nope.jpg"])
    assert [r["status"] for r in res] == ["exact", "new", "error", "error"]
    assert "a.jpg" not in res[1]["path"] and res[0]["matches"][0]["ad_ids"] == ["A"]
    assert "broken.jpg" in res[2]["error"] and "not found" in res[3]["error"]
    with ws.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.images)).scalar_one() == 1
