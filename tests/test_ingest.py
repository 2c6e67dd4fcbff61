import hashlib
import json
import os
import subprocess
import sys
import textwrap

import sqlalchemy as sa

from adlens.ingest.ads import ingest_ads
from adlens.ingest.articles import ingest_articles
from adlens.ingest.products import ingest_products
from adlens.store import schema
from adlens.store.catalog import catalog_counts

from conftest import banner, encode


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_folder_ingest_rejects_bad_files_and_keeps_going(ws, tmp_path, bad_files):
    folder, expected = bad_files
    for i in range(3):
        (folder / f"good{i}.jpg").write_bytes(encode(banner(10 + i)))
    before = _snapshot(folder)
    s = ingest_ads(ws, folder, day="2026-11-01")
    assert s.added == 3 and s.already_present == 0
    reasons = {r.path.split("/")[-1]: r.reason for r in s.rejected}
    assert set(reasons) == set(expected)
    for name, fragment in expected.items():
        assert fragment in reasons[name]
    assert s.total == 3 + len(expected)  # every input counted exactly once
    assert _snapshot(folder) == before  # nothing the user gave was touched
    # stored blobs are byte-identical to the originals
    with ws.engine.connect() as conn:
        shas = [r[0] for r in conn.execute(sa.select(schema.images.c.sha256))]
    originals = {hashlib.sha256((folder / f"good{i}.jpg").read_bytes()).hexdigest() for i in range(3)}
    assert set(shas) == originals
    for sha in shas:
        assert hashlib.sha256(ws.blobs.get(sha)).hexdigest() == sha
    # rejections are kept with the run
    with ws.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.rejections)).scalar_one() == len(expected)


def test_reingest_adds_nothing(ws, tmp_path):
    folder = tmp_path / "ads"
    folder.mkdir()
    for i in range(4):
        (folder / f"a{i}.png").write_bytes(encode(banner(20 + i), "PNG"))
    first = ingest_ads(ws, folder, day="2026-11-01")
    counts = catalog_counts(ws.engine)
    second = ingest_ads(ws, folder, day="2026-11-01")
    assert (first.added, second.added, second.already_present) == (4, 0, 4)
    assert second.extra["new_sightings"] == 0
    assert catalog_counts(ws.engine) | {"runs": 0} == counts | {"runs": 0}


def test_manifest_rows_validated(ws, tmp_path):
    img = tmp_path / "imgs"
    img.mkdir()
    (img / "x.jpg").write_bytes(encode(banner(30)))
    (img / "y.jpg").write_bytes(encode(banner(31)))
    manifest = tmp_path / "ads.csv"
    manifest.write_text(
        "path,ad_id,advertiser,text,day\n"
        "imgs/x.jpg,ad1,Acme,Buy now,2026-11-02\n"
        ",ad2,Acme,no path,2026-11-02\n"
        "imgs/y.jpg,ad3,Acme,bad day,02/11/2026\n"
        "imgs/missing.jpg,ad4,Acme,gone,2026-11-02\n"
        "imgs/y.jpg,ad1,Acme,conflicting id,2026-11-02\n"
        "imgs/y.jpg,ad5,Beta,ok,\n"
    )
    s = ingest_ads(ws, manifest, day="2026-11-05")
    assert s.added == 2 and s.total == 6
    reasons = [r.reason for r in s.rejected]
    assert any("missing 'path'" in r for r in reasons)
    assert any("is not a date" in r for r in reasons)
    assert any("file not found" in r for r in reasons)
    assert any("already bound to a different image" in r for r in reasons)
    with ws.engine.connect() as conn:
        rows = dict(conn.execute(sa.select(schema.creatives.c.ad_id, schema.creatives.c.day)).all())
        adv = conn.execute(sa.select(schema.creatives.c.advertiser).where(schema.creatives.c.ad_id == "ad1")).scalar()
    assert rows == {"ad1": "2026-11-02", "ad5": "2026-11-05"}  # row day wins, else --day
    assert adv == "Acme"


def test_jsonl_manifest_and_bad_lines(ws, tmp_path):
    (tmp_path / "z.jpg").write_bytes(encode(banner(40)))
    m = tmp_path / "ads.jsonl"
    m.write_text(json.dumps({"path": "z.jpg", "ad_id": "z"}) + "\n{not json\n[1,2]\n\n")
    s = ingest_ads(ws, m, day="2026-11-01")
    assert s.added == 1 and len(s.rejected) == 2


def test_crash_mid_ingest_loses_at_most_the_item_in_flight(ws, tmp_path, settings):
    folder = tmp_path / "ads"
    folder.mkdir()
    n = 12
    for i in range(n):
        (folder / f"a{i:02d}.jpg").write_bytes(encode(banner(50 + i)))
    # A child process ingests and is SIGKILLed while writing the 6th blob (mid-item).
    script = textwrap.dedent(
        f"""
        import os, signal
        from adlens.config import Settings
        from adlens.workspace import open_workspace
        from adlens.store import blobs
        from adlens.ingest.ads import ingest_ads
        calls = [0]
        real_put = blobs.BlobStore.put
        def put(self, sha, data):
            calls[0] += 1
            if calls[0] == 6:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_put(self, sha, data)
        blobs.BlobStore.put = put
        ws = open_workspace({str(settings.workspace)!r}, Settings(workspace={str(settings.workspace)!r}, workers=2))
        ingest_ads(ws, {str(folder)!r}, day="2026-11-01")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env=os.environ.copy())
    assert proc.returncode == -9
    with ws.engine.connect() as conn:
        done = conn.execute(sa.select(sa.func.count()).select_from(schema.creatives)).scalar_one()
    assert done == 5  # items 1-5 committed, item 6 in flight lost
    s = ingest_ads(ws, folder, day="2026-11-01")  # resume
    assert (s.added, s.already_present, len(s.rejected)) == (n - 5, 5, 0)
    counts = catalog_counts(ws.engine)
    assert counts["ads"] == counts["images"] == counts["sightings"] == n
    with ws.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.ledger)).scalar_one() == n
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.image_hashes)).scalar_one() == n


def test_articles_ingest(ws, tmp_path):
    f = tmp_path / "articles.jsonl"
    lines = [
        {"article_id": "a1", "title": "Trip", "text": "Paris in spring", "topic": "travel", "ad_id": "ad1"},
        {"article_id": "a2", "text": ""},
        {"text": "No id given, the text names it"},
    ]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    s = ingest_articles(ws, f)
    assert (s.added, len(s.rejected)) == (2, 2)
    s2 = ingest_articles(ws, f)
    assert (s2.added, s2.already_present) == (0, 2)
    f2 = tmp_path / "changed.jsonl"
    f2.write_text(json.dumps({"article_id": "a1", "text": "a different text"}) + "\n")
    s3 = ingest_articles(ws, f2)
    assert "different text" in s3.rejected[0].reason
    with ws.engine.connect() as conn:
        assert conn.execute(sa.select(schema.articles.c.text).where(schema.articles.c.article_id == "a1")).scalar() == "Paris in spring"


def test_products_folder_categories_and_manifest(ws, tmp_path):
    root = tmp_path / "products"
    for cat, seeds in {"shoes": [60, 61], "hats": [62]}.items():
        (root / cat).mkdir(parents=True)
        for s in seeds:
            (root / cat / f"p{s}.jpg").write_bytes(encode(banner(s, (120, 120))))
    s = ingest_products(ws, root)
    assert s.added == 3
    with ws.engine.connect() as conn:
        cats = sorted(r[0] for r in conn.execute(sa.select(schema.products.c.category)))
    assert cats == ["hats", "shoes", "shoes"]
    m = tmp_path / "products.csv"
    m.write_text("product_id,title,category,url,path\nP1,Red shoe,shoes,http://x/1,products/shoes/p60.jpg\nP2,,,,nope.jpg\n")
    s2 = ingest_products(ws, m)
    assert s2.added == 1 and "file not found" in s2.rejected[0].reason
