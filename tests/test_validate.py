import io

import numpy as np
import pytest
from PIL import Image

from adlens.errors import InvalidInput
from adlens.ingest.validate import load_image, read_file

from conftest import banner, encode


def test_valid_jpeg_decodes_to_rgb_and_hashes_original_bytes():
    import hashlib

    data = encode(banner(3))
    info, img = load_image(data, "a.jpg")
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert (info.width, info.height, info.format, info.mode) == (300, 250, "JPEG", "RGB")
    assert img.mode == "RGB" and img.size == (300, 250)


def test_invalid_inputs_rejected_with_reason(bad_files):
    folder, expected = bad_files
    for name, fragment in expected.items():
        with pytest.raises(InvalidInput) as e:
            load_image(read_file(folder / name), name)
        assert name in str(e.value) and fragment in str(e.value), (name, str(e.value))


def test_read_file_limits(tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(InvalidInput, match="too large"):
        read_file(big, max_bytes=1000)
    with pytest.raises(InvalidInput, match="not found"):
        read_file(tmp_path / "missing.jpg")
    with pytest.raises(InvalidInput, match="not a regular file"):
        read_file(tmp_path)


def test_pixel_limit_is_configurable():
    data = encode(banner(4, (200, 100)), "PNG")
    with pytest.raises(InvalidInput, match="20,000 pixels > limit 10,000"):
        load_image(data, "x.png", max_pixels=10_000)


def test_cmyk_palette_alpha_and_16bit_are_normalised():
    base = banner(5, (64, 48))
    cmyk = encode(base.convert("CMYK"), "JPEG")
    pal = encode(base.convert("P", palette=Image.Palette.ADAPTIVE), "PNG")
    rgba = base.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: must come out white, not black
    grey16 = Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16))
    for data, mode in [(cmyk, "CMYK"), (pal, "P"), (encode(rgba, "PNG"), "RGBA"), (encode(grey16, "PNG"), "I;16")]:
        info, img = load_image(data, f"{mode}.img")
        assert img.mode == "RGB" and img.size == (64, 48)
        assert info.mode.startswith(mode[:1])
    _, img = load_image(encode(rgba, "PNG"), "t.png")
    assert np.asarray(img).min() == 255


def test_exif_rotation_applied():
    img = banner(6, (80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    info, out = load_image(buf.getvalue(), "r.jpg")
    assert out.size == (40, 80) and (info.width, info.height) == (40, 80)
