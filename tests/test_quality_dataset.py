from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from adlens.quality.dataset import build_dataset, content_hash, iter_batches
from adlens.quality.pairs import make_pairs
from adlens.quality.student import train_quality
from adlens.quality.teachers import RubricTeacher


def test_dataset_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    topics = ["cars", "food", "tech"]
    ads = [{"ad_id": f"ad{i}", "topic": topics[i % 3], "valence": float(rng.uniform(-1, 1)),
            "positive_article_id": f"art{i}"} for i in range(60)]
    arts = [{"article_id": f"art{i}", "topic": topics[i % 3], "valence": ads[i]["valence"]} for i in range(60)]
    pairs = make_pairs(ads, arts)
    pf = {p["pair_id"]: {"sim_adtext_article": float(rng.uniform()) + (p["pair_type"] == "positive"),
                         "topic_match": float(p["pair_type"] == "positive"), "sentiment_alignment": float(rng.uniform())}
          for p in pairs}
    af = {a["ad_id"]: {"ad_id": a["ad_id"], "clarity": float(rng.uniform(0, 8)), "face_emotion": "smiling" if i % 2 else None,
                       "image_embedding": np.ones(4, np.float32)} for i, a in enumerate(ads)}
    imgs = {a["ad_id"]: f"img-{a['ad_id']}".encode() for a in ads}
    merged_for_teacher = [{**p, **pf[p["pair_id"]], **af[p["ad_id"]]} for p in pairs]
    labels = RubricTeacher().label(merged_for_teacher)
    out = tmp_path / "ds.parquet"
    card = build_dataset(pairs, labels, out, pair_features=pf, ad_features=af, ad_images=imgs, batch_size=50)
    t = pq.read_table(out)
    assert t.num_rows == 240 == card["n_rows"] and pq.ParquetFile(out).metadata.num_row_groups == 5
    assert card["pairs_per_type"] == {"positive": 60, "random_negative": 120, "safe_contrast": 60}
    assert card["labels"]["teachers"] == {"rubric/1": 240} and card["labels"]["n_scored"] == 240
    d = t.to_pydict()
    assert "image_embedding" in d and all(v is None for v in d["image_embedding"])  # vectors dropped
    assert d["image_sha256"][0] == content_hash(b"img-ad0") and not any(isinstance(v, bytes) for v in d["image_sha256"])
    assert (tmp_path / "ds.card.md").read_text().startswith("# Quality dataset card")
    json.loads((tmp_path / "ds.card.json").read_text())
    assert sum(len(b["pair_id"]) for b in iter_batches(out, 100)) == 240
    # the chain runs: dataset -> student -> report on held-out ads
    feats = {k: d[k] for k in ("sim_adtext_article", "topic_match", "sentiment_alignment", "clarity", "face_emotion")}
    student, rep = train_quality(feats, d["score"], d["ad_id"], d["pair_type"], n_estimators=50)
    assert rep["split"]["shared_ads"] == 0 and rep["overall"]["r2"] > 0.5
