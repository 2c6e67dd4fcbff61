"""Self-contained inline SVG plots for the quality reports (no plotting library, no external assets).

:func:`calibration_svg` draws the student's reliability diagram from the calibration table of
:meth:`QualityStudent.evaluate` (``report["calibration"]``: equal-count bins of the predictions, each
``{"n", "mean_pred", "mean_true"}``): one point per bin at (mean predicted, mean teacher label), the
diagonal ``y = x`` (perfect calibration), the bin counts (circle area and a label), axes with ticks
and labels. Both axes share one domain so the diagonal is the true identity line.

Every point carries ``class="bin"`` and ``data-n`` / ``data-pred`` / ``data-true`` attributes and a
``<title>`` tooltip, so the picture can be checked (and is, in the tests) by parsing the XML.

Example::

    svg = calibration_svg(report["calibration"])   # '<svg xmlns="http://www.w3.org/2000/svg" ...'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

__all__ = ["calibration_svg", "nice_domain", "ticks"]

_FONT = 'font-family="system-ui,-apple-system,Segoe UI,sans-serif"'


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def nice_domain(values: Sequence[float], pad: float = 0.04) -> tuple[float, float]:
    """A shared axis domain covering ``values`` with a little padding, rounded outwards to half units
    (a constant input gets ±0.5)."""
    vals = [float(v) for v in values if _finite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    span = hi - lo
    if span == 0:
        return lo - 0.5, hi + 0.5
    lo, hi = lo - pad * span, hi + pad * span
    step = 0.5 if span > 1 else 10 ** math.floor(math.log10(span)) / 2
    return math.floor(lo / step) * step, math.ceil(hi / step) * step


def ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values in ``[lo, hi]`` (steps 1, 2, 2.5 or 5 times a power of ten)."""
    span = hi - lo
    if not (span > 0):
        return [lo]
    raw = span / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out, k = [], 0
    while first + k * step <= hi + 1e-9 * step:
        out.append(round(first + k * step, 10))
        k += 1
    return out


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v - round(v, 2)) < 1e-9 else f"{v:.2f}"


def calibration_svg(bins: Sequence[Mapping[str, Any]], *, width: int = 420, height: int = 380,
                    domain: tuple[float, float] | None = None,
                    x_label: str = "mean predicted score (student)",
                    y_label: str = "mean teacher label",
                    title: str = "Calibration on held-out ads") -> str:
    """Reliability diagram of ``bins`` (``[{"n", "mean_pred", "mean_true"}]``) as an SVG string.

    ``domain``: the shared ``(lo, hi)`` of both axes; default :func:`nice_domain` of all bin means.
    Bins with a non-finite mean are skipped; no usable bin gives a small "no data" SVG (still valid).
    """
    pts = [(float(b["mean_pred"]), float(b["mean_true"]), int(b.get("n") or 0)) for b in bins
           if _finite(b.get("mean_pred")) and _finite(b.get("mean_true"))]
    ml, mr, mt, mb = 58, 16, 34, 50  # margins: left, right, top, bottom
    pw, ph = width - ml - mr, height - mt - mb
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label={quoteattr(title)} class="calibration-plot">'
            f'<title>{escape(title)}</title>')
    if not pts:
        return (head + f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#fff" stroke="#ccd"/>'
                f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" font-size="13" {_FONT} '
                f'fill="#667">no calibration data</text></svg>')
    lo, hi = domain if domain is not None else nice_domain([v for p in pts for v in p[:2]])
    if not hi > lo:
        lo, hi = lo - 0.5, lo + 0.5
    sx = lambda v: ml + (v - lo) / (hi - lo) * pw
    sy = lambda v: mt + ph - (v - lo) / (hi - lo) * ph
    parts = [head,
             f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fbfcfe" stroke="#99a"/>']
    for t in ticks(lo, hi):
        x, y = sx(t), sy(t)
        parts.append(f'<line x1="{x:.2f}" y1="{mt}" x2="{x:.2f}" y2="{mt + ph}" stroke="#e4e7ee"/>'
                     f'<line x1="{ml}" y1="{y:.2f}" x2="{ml + pw}" y2="{y:.2f}" stroke="#e4e7ee"/>'
                     f'<line x1="{x:.2f}" y1="{mt + ph}" x2="{x:.2f}" y2="{mt + ph + 5}" stroke="#556"/>'
                     f'<line x1="{ml - 5}" y1="{y:.2f}" x2="{ml}" y2="{y:.2f}" stroke="#556"/>'
                     f'<text x="{x:.2f}" y="{mt + ph + 18}" text-anchor="middle" font-size="11" {_FONT} '
                     f'fill="#334">{_fmt(t)}</text>'
                     f'<text x="{ml - 8}" y="{y + 4:.2f}" text-anchor="end" font-size="11" {_FONT} '
                     f'fill="#334">{_fmt(t)}</text>')
    parts.append(f'<line class="diagonal" x1="{sx(lo):.2f}" y1="{sy(lo):.2f}" x2="{sx(hi):.2f}" y2="{sy(hi):.2f}" '
                 f'stroke="#999" stroke-width="1.2" stroke-dasharray="5,4"><title>perfect calibration (y = x)</title></line>')
    order = sorted(pts)
    parts.append('<polyline class="curve" fill="none" stroke="#4a78b5" stroke-width="1.5" points="'
                 + " ".join(f"{sx(p):.2f},{sy(t):.2f}" for p, t, _ in order) + '"/>')
    nmax = max((n for *_, n in pts), default=1) or 1
    for k, (p, t, n) in enumerate(order):
        x, y = sx(p), sy(t)
        r = 3.0 + 5.0 * math.sqrt(max(n, 0) / nmax)  # area ~ pairs in the bin
        tip = f"bin {k + 1}: {n} pairs, mean predicted {p:.3f}, mean teacher {t:.3f}"
        parts.append(f'<circle class="bin" cx="{x:.2f}" cy="{y:.2f}" r="{r:.2f}" fill="#4a78b5" fill-opacity="0.75" '
                     f'stroke="#fff" data-n="{n}" data-pred="{p:.6g}" data-true="{t:.6g}">'
                     f'<title>{escape(tip)}</title></circle>')
        dy = -(r + 4) if k % 2 == 0 else r + 12  # alternate above / below to limit overlaps
        parts.append(f'<text class="count" x="{x:.2f}" y="{y + dy:.2f}" text-anchor="middle" font-size="10" {_FONT} '
                     f'fill="#445">{n}</text>')
    total = sum(n for *_, n in pts)
    parts.append(f'<text x="{ml + pw / 2:.1f}" y="{height - 12}" text-anchor="middle" font-size="12" {_FONT} '
                 f'fill="#1d2330">{escape(x_label)}</text>'
                 f'<text transform="translate(15,{mt + ph / 2:.1f}) rotate(-90)" text-anchor="middle" font-size="12" '
                 f'{_FONT} fill="#1d2330">{escape(y_label)}</text>'
                 f'<text x="{ml}" y="{mt - 18}" font-size="12" font-weight="600" {_FONT} fill="#1d2330">{escape(title)}</text>'
                 f'<text x="{ml}" y="{mt - 5}" font-size="10" {_FONT} fill="#667">{total} pairs, {len(pts)} '
                 f'equal-count bins (n per bin shown); dashed: y = x</text>')
    parts.append("</svg>")
    return "".join(parts)
