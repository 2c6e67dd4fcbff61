"""End-to-end through the CLI on a tiny sample corpus: the commands users type."""

import json

import pytest
from typer.testing import CliRunner

from adlens.cli import app

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    invoke("sample", root / "sample", "--n-ads", 24, "--json")
    return root


def test_main_job_on_sample(corpus, tmp_path):
    ws = tmp_path / "ws"
    invoke("init", "--workspace", ws)
    s = corpus / "sample"
    report = tmp_path / "report.html"
    out = json.loads(invoke("run", "-w", ws, "--ads", s / "ads.csv", "--articles", s / "articles.jsonl",
                            "--products", s / "products.csv", "--report", report, "--json").stdout)
    truth = json.loads((s / "duplicates.json").read_text())
    ads = out["ingest"]["ads"]
    assert len(ads["rejected"]) == len(truth["invalid"])  # exactly the deliberately broken files
    assert ads["added"] + len(ads["rejected"]) == ads["total"]
    # hash-detectable groups of the ground truth are found as groups
    d = out["dedup"]
    hash_groups = [g for g in truth["groups"] if sum(m["kind"] != "relayout" for m in g["members"]) >= 2]
    assert d["groups"] >= len(hash_groups)
    assert report.exists() and "Deduplication" in report.read_text()
    # the main job is rerunnable: nothing new the second time
    again = json.loads(invoke("run", "-w", ws, "--ads", s / "ads.csv", "--json").stdout)
    assert again["ingest"]["ads"]["added"] == 0
    assert again["dedup"]["creatives"] == d["creatives"]
    status = json.loads(invoke("status", "-w", ws, "--json").stdout)
    assert status["counts"]["ads"] == d["creatives"]
    groups = json.loads(invoke("dedup", "groups", "-w", ws, "--json").stdout)["groups"]
    assert len(groups) == d["groups"]


def test_dedup_find_folder_json_and_report(corpus, tmp_path):
    s = corpus / "sample"
    report = tmp_path / "dedup.html"
    out = json.loads(invoke("dedup", "find", s / "ads", "--json", "--report", report).stdout)
    truth = json.loads((s / "duplicates.json").read_text())
    assert {r["path"].split("/")[-1] for r in out["rejected"]} == {i["path"].split("/")[-1] for i in truth["invalid"]}
    assert all(len(g) >= 2 for g in out["groups"])
    in_groups = [p for g in out["groups"] for p in g]
    assert len(in_groups) == len(set(in_groups))  # no file in two groups
    # every found group lies within one ground-truth group (precision on this corpus)
    group_of = {m["path"].split("/")[-1]: g["group_id"] for g in truth["groups"] for m in g["members"]}
    for g in out["groups"]:
        assert len({group_of.get(p.split("/")[-1], p) for p in g}) == 1
    html = report.read_text()
    assert html.count("<img") == len(in_groups) and "Rejected files" in html


def test_dedup_check_against_workspace(corpus, tmp_path):
    ws = tmp_path / "ws"
    invoke("init", "-w", ws)
    s = corpus / "sample"
    invoke("ingest", "ads", s / "ads.csv", "-w", ws, "--json")
    truth = json.loads((s / "duplicates.json").read_text())
    member = truth["groups"][0]["members"][0]
    out = json.loads(invoke("dedup", "check", s / member["path"], tmp_path / "missing.jpg", "-w", ws, "--json").stdout)
    assert out[0]["status"] == "exact" and member["ad_id"] in out[0]["matches"][0]["ad_ids"]
    assert out[1]["status"] == "error"


def test_errors_are_clear(tmp_path):
    result = runner.invoke(app, ["ingest", "ads", str(tmp_path), "-w", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not an adlens workspace" in result.output
    invoke("init", "-w", tmp_path / "ws")
    result = runner.invoke(app, ["ingest", "ads", str(tmp_path / "missing.csv"), "-w", str(tmp_path / "ws")])
    assert result.exit_code == 2 and "no such file" in result.output
