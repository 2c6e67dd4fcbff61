"""Self-contained HTML reports (thumbnails inlined as data URIs, no external assets)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image

_env = Environment(loader=PackageLoader("adlens", "templates"), autoescape=select_autoescape(["html"]))


def thumbnail_uri(source: bytes | Path | str, size: int = 140) -> str | None:
    """A small JPEG data URI of an image, or None when it cannot be decoded."""
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (size * 2, size * 2))
            img = img.convert("RGB")
            img.thumbnail((size, size))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    except Exception:
        return None


def render(template: str, out_path: Path | str, **context) -> Path:
    """Render ``templates/<template>`` to ``out_path`` (parents created)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_env.get_template(template).render(**context), encoding="utf-8")
    return out
