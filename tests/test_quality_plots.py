"""The calibration plot: well-formed SVG whose points follow the data, and the evaluation page."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from adlens.quality.plots import calibration_svg, nice_domain, ticks

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str):
    root = ET.fromstring(svg)  # raises on malformed XML
    assert root.tag == f"{NS}svg"
    circles = [e for e in root.iter(f"{NS}circle") if e.get("class") == "bin"]
    diag = next(e for e in root.iter(f"{NS}line") if e.get("class") == "diagonal")
    return root, circles, diag


def side_of_diagonal(c, diag) -> float:
    """Signed distance (px) of a circle's centre from the diagonal; > 0 = above it on screen."""
    x1, y1, x2, y2 = (float(diag.get(k)) for k in ("x1", "y1", "x2", "y2"))
    x, y = float(c.get("cx")), float(c.get("cy"))
    return ((x2 - x1) * (y1 - y) - (y2 - y1) * (x1 - x)) / np.hypot(x2 - x1, y2 - y1)


def test_perfect_calibration_on_the_diagonal():
    bins = [{"n": 10 + k, "mean_pred": v, "mean_true": v} for k, v in enumerate([1.7, 2.9, 4.4, 5.0, 6.8, 9.1])]
    root, circles, diag = parse(calibration_svg(bins))
    assert len(circles) == 6
    for c in circles:
        assert abs(side_of_diagonal(c, diag)) < 0.05
    # the diagonal runs from the bottom-left to the top-right corner of the plot
    assert float(diag.get("x1")) < float(diag.get("x2")) and float(diag.get("y1")) > float(diag.get("y2"))
    # counts are shown and carried
    assert [int(c.get("data-n")) for c in circles] == [10, 11, 12, 13, 14, 15]
    counts = [e.text for e in root.iter(f"{NS}text") if e.get("class") == "count"]
    assert counts == [str(n) for n in range(10, 16)]
    # bigger bins are drawn bigger
    radii = [float(c.get("r")) for c in circles]
    assert radii == sorted(radii) and radii[0] < radii[-1]
    texts = " ".join(e.text or "" for e in root.iter(f"{NS}text"))
    assert "mean predicted" in texts and "mean teacher label" in texts


def test_points_follow_the_data():
    pred = [2.0, 4.0, 6.0, 8.0]
    under = [{"n": 5, "mean_pred": p, "mean_true": p + 1.0} for p in pred]   # student under-predicts
    over = [{"n": 5, "mean_pred": p, "mean_true": p - 1.0} for p in pred]    # student over-predicts
    _, cu, du = parse(calibration_svg(under, domain=(0, 10)))
    _, co, do = parse(calibration_svg(over, domain=(0, 10)))
    assert all(side_of_diagonal(c, du) > 5 for c in cu)
    assert all(side_of_diagonal(c, do) < -5 for c in co)
    # same domain: x positions equal, y offset equal and opposite
    xs = [float(c.get("cx")) for c in cu]
    assert xs == [float(c.get("cx")) for c in co] and xs == sorted(xs)
    # linear mapping: equal data steps -> equal pixel steps, y grows upwards
    assert np.allclose(np.diff(xs), np.diff(xs)[0])
    ys = [float(c.get("cy")) for c in cu]
    assert np.allclose(np.diff(ys), np.diff(ys)[0]) and ys == sorted(ys, reverse=True)
    # a point's pixel position inverts to its data value through the axis ticks' geometry
    svg = calibration_svg([{"n": 1, "mean_pred": 3.0, "mean_true": 7.0}], domain=(0, 10), width=420, height=380)
    _, (c,), diag = parse(svg)
    x0, x1 = float(diag.get("x1")), float(diag.get("x2"))
    y0, y1 = float(diag.get("y1")), float(diag.get("y2"))
    assert (float(c.get("cx")) - x0) / (x1 - x0) * 10 == pytest.approx(3.0, abs=0.01)
    assert (float(c.get("cy")) - y0) / (y1 - y0) * 10 == pytest.approx(7.0, abs=0.01)
    # unsorted input is drawn in order of predictions (the curve is monotone in x)
    _, cs, _ = parse(calibration_svg(list(reversed(under)), domain=(0, 10)))
    assert [float(c.get("data-pred")) for c in cs] == pred


def test_degenerate_inputs_stay_valid():
    _, circles, _ = parse(calibration_svg([{"n": 3, "mean_pred": 5.0, "mean_true": 5.0}]))
    assert len(circles) == 1
    _, circles, _ = parse(calibration_svg([{"n": 3, "mean_pred": float("nan"), "mean_true": 5.0},
                                           {"n": 4, "mean_pred": 2.0, "mean_true": 3.0}]))
    assert [c.get("data-n") for c in circles] == ["4"]
    root = ET.fromstring(calibration_svg([]))
    assert "no calibration data" in "".join(root.itertext())
    # markup in labels is escaped, not injected
    root = ET.fromstring(calibration_svg([{"n": 1, "mean_pred": 1, "mean_true": 2}], title="a <b> & c"))
    assert root.find(f"{NS}title").text == "a <b> & c"


def test_domain_and_ticks():
    lo, hi = nice_domain([2.3, 7.9])
    assert lo <= 2.3 and hi >= 7.9 and lo >= 1.5 and hi <= 8.5
    assert ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert ticks(1.5, 8.5)[0] >= 1.5 and ticks(1.5, 8.5)[-1] <= 8.5


def test_calibration_of_a_trained_student_and_evaluation_page():
    """Real calibration table from the student's own evaluation -> the standalone HTML page."""
    from adlens.quality.jobs import evaluation_page
    from adlens.quality.student import train_quality

    rng = np.random.default_rng(0)
    n_ads = 60
    g = np.repeat([f"ad{i}" for i in range(n_ads)], 4)
    pt = np.tile(["positive", "random_negative", "random_negative", "safe_contrast"], n_ads)
    x = rng.uniform(size=len(g))
    y = 1 + 9 * x * (pt == "positive") + rng.normal(0, 0.2, len(g))
    _, rep = train_quality({"sim": x, "pos": (pt == "positive").astype(float)}, y, g, pair_types=pt,
                                 n_estimators=50)
    cal = rep["calibration"]
    assert sum(b["n"] for b in cal) == rep["overall"]["n"]
    html = evaluation_page({"version": "v0007", "teacher": "labels", "path": "/x/v0007", "metrics": rep,
                            "card": {"n_rows": len(g), "n_ads": n_ads, "features": ["sim", "pos"]}})
    assert "adlens quality model v0007" in html and "Held-out metrics" in html and "safe_contrast" in html
    assert "&lt;svg" not in html  # the SVG is inlined, not escaped
    svg = ET.fromstring(html[html.index("<svg"): html.index("</svg>") + 6])
    circles = [e for e in svg.iter(f"{NS}circle") if e.get("class") == "bin"]
    assert [float(c.get("data-pred")) for c in circles] == pytest.approx([b["mean_pred"] for b in cal], rel=1e-5)
