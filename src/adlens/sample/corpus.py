"""Deterministic synthetic demo corpus: banner ads, articles, products, events.

Everything is generated locally from the photos that ship inside the
scikit-image wheel and Pillow's built-in scalable font, so no network access
is needed. The same ``seed`` always produces byte-identical files (fixed JPEG
and PNG parameters, seeded ``numpy.random.Generator`` / ``random.Random``
streams, no timestamps).

Output layout::

    OUT/
      ads/              banner images, named <ad_id>.jpg|.png (JPEG mostly, some
                        PNG incl. palette and RGBA, a CMYK JPEG) plus a few
                        deliberately invalid files (zero-byte, truncated JPEG,
                        text named .jpg, decompression-bomb PNG)
      ads.csv           path (relative to OUT), ad_id, advertiser, campaign, text,
                        landing_url, day (YYYY-MM-DD); originals, variants and
                        the invalid files; ``text`` is "brand | headline | price | cta"
      duplicates.json   ground truth: {"groups": [{"group_id", "members": [{"ad_id",
                        "path", "kind"}]}], "invalid": [{"path", "problem"}],
                        "hash_kinds": [...], "notes": "..."}
      articles.jsonl    article_id, title, text, topic, ad_id, url (+ tone)
      products/         product images (one rendered object per product)
      products.csv      product_id, title, category, url, path (relative to OUT)
      events.csv        event_id, ts (ISO UTC), request_id, article_id, ad_id,
                        event (request | impression | click)

Duplicate kinds: ``original`` plus the near-duplicates a perceptual hash must
catch (``reencode``, ``resize``, ``crop``, ``text_change``, ``rerender_2x``,
listed in ``hash_kinds``) and ``relayout`` (same creative in another standard
size), which only an embedding stage is expected to catch.

The generator keeps that ground truth unambiguous for a 64-bit pHash: a new
original (or relayout) that lands within ``MIN_ORIGINAL_DISTANCE`` bits of an
earlier creative is re-planned, and a hash variant that drifts more than
``MAX_VARIANT_DISTANCE`` bits from its original is re-drawn (rare). The
summary reports how often either happened.

Example::

    >>> from adlens.sample import make_sample
    >>> summary = make_sample("demo", n_ads=240, seed=0)    # doctest: +SKIP
    >>> summary["counts"]["creatives"], summary["paths"]["ads_csv"]    # doctest: +SKIP
    (240, 'demo/ads.csv')
"""

from __future__ import annotations

import colorsys
import csv
import io
import itertools
import json
import random
import shutil
import struct
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

__all__ = ["make_sample", "render_creative", "phash_bits", "HASH_KINDS", "AD_SIZES"]

Progress = Callable[[str, int, int], None] | None

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

# Standard IAB sizes: medium rectangle, leaderboard, skyscraper, social square.
AD_SIZES: dict[str, tuple[int, int]] = {
    "rect": (300, 250),
    "leaderboard": (728, 90),
    "skyscraper": (160, 600),
    "square": (1080, 1080),
}
SIZE_WEIGHTS = {"rect": 0.4, "leaderboard": 0.2, "skyscraper": 0.2, "square": 0.2}

DAYS = ["2024-05-06", "2024-05-07", "2024-05-08", "2024-05-09", "2024-05-10"]

HASH_KINDS = ["original", "reencode", "resize", "crop", "text_change", "rerender_2x"]
VARIANT_KINDS = HASH_KINDS[1:]
VARIANT_SHARE = 0.35  # originals that get 1-3 hash variants
RELAYOUT_SHARE = 0.05  # originals that get re-rendered in another size

# Distinct originals (and relayouts) are re-planned until their 64-bit pHash is
# more than this many bits away from every earlier original, so the ground truth
# never calls two look-alike creatives "different".
MIN_ORIGINAL_DISTANCE = 16
MAX_REPLANS = 25
# A hash variant whose pHash drifts further than this from its original (rare:
# flat, low-contrast creatives under a crop) is re-drawn, keeping the closest.
MAX_VARIANT_DISTANCE = 10
MAX_VARIANT_TRIES = 6

# Fixed encoder settings keep files byte-identical between runs.
JPEG_KW = {"subsampling": 2, "optimize": False, "progressive": False}
PNG_KW = {"compress_level": 6, "optimize": False}

# ---------------------------------------------------------------------------
# Catalogue: topics, advertisers, copy
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    name: str
    advertisers: tuple[str, ...]
    products: tuple[str, ...]
    ctas: tuple[str, ...]
    photos: tuple[str, ...]
    price_range: tuple[int, int]
    specials: tuple[str, ...]  # topic-typical offers instead of a plain price


TOPICS: dict[str, Topic] = {
    t.name: t
    for t in [
        Topic("travel", ("Skyline Getaways", "Nomad Trails", "BlueHarbor Cruises"),
              ("Lisbon city break", "Alpine ski week", "Greek island cruise", "Safari adventure",
               "Tokyo weekend", "Northern lights tour", "Beach resort stay", "Rail pass Europe"),
              ("BOOK TODAY", "SEE DEALS", "EXPLORE", "LEARN MORE"),
              ("rocket", "hubble_deep_field", "moon", "grass", "astronaut", "motorcycle"),
              (199, 1499), ("2 NIGHTS FREE", "Kids fly free")),
        Topic("food", ("Crumb & Co.", "Fresh Basket", "Urban Roast"),
              ("Sourdough bakery box", "Weekly veggie box", "Single-origin coffee", "Pasta night kit",
               "Vegan snack pack", "Cold brew bundle", "Family meal plan"),
              ("ORDER NOW", "SHOP NOW", "TRY IT", "GET RECIPE"),
              ("coffee", "chelsea", "grass", "brick", "colorwheel", "immunohistochemistry"),
              (3, 49), ("2 FOR 1", "Free delivery")),
        Topic("tech", ("Voltix", "Nimbus Cloud", "Pixelcraft"),
              ("Noise-cancelling headphones", "4K action camera", "Cloud backup plan",
               "Smart home hub", "Gaming laptop", "Wireless earbuds", "Photo editing suite"),
              ("SHOP NOW", "TRY FREE", "LEARN MORE", "GET STARTED"),
              ("astronaut", "camera", "rocket", "hubble_deep_field", "page", "text", "clock"),
              (19, 1299), ("Free trial", "1 TB free")),
        Topic("fashion", ("Maison Lune", "Threadline", "Velvet Row"),
              ("Linen summer dress", "Leather ankle boots", "Organic cotton tees", "Wool overcoat",
               "Silk scarf collection", "Denim essentials"),
              ("SHOP NOW", "DISCOVER", "SEE STYLES", "SHOP SALE"),
              ("astronaut", "chelsea", "colorwheel", "gravel", "horse", "brick"),
              (19, 349), ("New season", "Free returns")),
        Topic("finance", ("Northstar Bank", "CoinLedger", "Harbor Insurance"),
              ("High-yield savings", "Travel rewards card", "Home insurance", "Crypto tax tool",
               "Small business loan", "Retirement planner"),
              ("APPLY NOW", "GET A QUOTE", "LEARN MORE", "OPEN ACCOUNT"),
              ("coins", "page", "text", "clock", "camera", "moon"),
              (0, 0), ("0% APR", "4.5% APY", "$200 bonus", "No fees", "Save 15%")),
        Topic("auto", ("Ridgeway Motors", "Torque Tires", "Voltway EV"),
              ("All-season tyres", "Electric SUV", "Hybrid hatchback", "Service package",
               "Home EV charger", "Roof cargo box"),
              ("BOOK A TEST", "FIND A DEALER", "LEARN MORE", "GET OFFER"),
              ("motorcycle", "gravel", "brick", "rocket", "clock", "coins"),
              (89, 899), ("0.9% APR", "$1,000 OFF")),
        Topic("health", ("VitaLeaf", "ClearSight Clinic", "Calm Harbor"),
              ("Daily multivitamin", "Laser eye check", "Sleep coaching app", "Meditation course",
               "Blood test at home", "Herbal tea set"),
              ("LEARN MORE", "BOOK NOW", "TRY FREE", "START TODAY"),
              ("cell", "retina", "immunohistochemistry", "coffee", "grass", "moon"),
              (9, 199), ("First month free", "$29/mo")),
        Topic("sports", ("Apex Athletics", "Trailblaze Gear", "PulseFit"),
              ("Trail running shoes", "Carbon road bike", "Yoga starter kit", "Home gym bundle",
               "Hiking backpack", "Gym membership"),
              ("SHOP NOW", "JOIN TODAY", "GEAR UP", "LEARN MORE"),
              ("horse", "grass", "gravel", "astronaut", "motorcycle", "rocket"),
              (15, 999), ("Join for $1", "Free fitting")),
        Topic("home", ("Hearth & Home", "NestWorks"),
              ("Oak dining table", "Cast iron cookware", "Smart thermostat", "Linen bedding set",
               "Robot vacuum", "Garden furniture"),
              ("SHOP NOW", "SEE RANGE", "ORDER NOW", "LEARN MORE"),
              ("chelsea", "brick", "coffee", "clock", "coins", "logo"),
              (9, 899), ("Free assembly", "Buy 2 get 1")),
        Topic("entertainment", ("StarReel", "Echo Live Tickets", "Arcadia Games"),
              ("Sci-fi series premiere", "Summer festival pass", "Indie game bundle",
               "Jazz night tickets", "Movie streaming plan", "Space documentary"),
              ("GET TICKETS", "WATCH NOW", "PLAY NOW", "LEARN MORE"),
              ("hubble_deep_field", "moon", "camera", "colorwheel", "astronaut", "rocket"),
              (5, 149), ("Free trial", "2 FOR 1")),
    ]
}

HEADLINE_TEMPLATES = ("{p}", "New {p}", "Discover {p}", "{p}, reimagined", "Meet our {p}",
                      "{p} for less", "The {p} you need", "Try {p} today")

CAMPAIGN_NAMES = ("spring-sale", "summer-launch", "brand-awareness", "weekend-promo",
                  "retargeting", "new-arrivals", "loyalty", "flash-deal")


@dataclass(frozen=True)
class Advertiser:
    name: str
    slug: str
    topic: str
    primary: tuple[int, int, int]
    secondary: tuple[int, int, int]
    upper_brand: bool
    campaigns: tuple[str, ...]


def _slug(text: str) -> str:
    out = "".join(ch.lower() if ch.isalnum() else "-" for ch in text)
    return "-".join(filter(None, out.split("-")))


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def _luma(rgb: tuple[int, int, int]) -> float:
    return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255.0


def _make_advertisers(rnd: random.Random) -> list[Advertiser]:
    out = []
    for topic in TOPICS.values():
        for name in topic.advertisers:
            hue = rnd.random()
            out.append(Advertiser(
                name=name, slug=_slug(name), topic=topic.name,
                primary=_hsv(hue, rnd.uniform(0.65, 0.95), rnd.uniform(0.55, 0.9)),
                secondary=_hsv(hue + rnd.uniform(0.3, 0.7), rnd.uniform(0.4, 0.8), rnd.uniform(0.6, 0.95)),
                upper_brand=rnd.random() < 0.5,
                campaigns=tuple(rnd.sample(CAMPAIGN_NAMES, rnd.randint(2, 3))),
            ))
    return out


def _price(rnd: random.Random, topic: Topic) -> str:
    """A price or discount string typical for the topic."""
    lo, hi = topic.price_range
    kind = rnd.random()
    if hi == 0 or kind < 0.2:
        return rnd.choice(topic.specials)
    if kind < 0.5:
        return f"${rnd.randint(lo, hi)}.99"
    if kind < 0.65:
        return f"From ${rnd.randint(lo, hi)}"
    if kind < 0.85:
        return f"-{rnd.choice((10, 15, 20, 25, 30, 40, 50))}%"
    return f"Save {rnd.choice((10, 20, 30, 50))}%"


# ---------------------------------------------------------------------------
# Photos and fonts
# ---------------------------------------------------------------------------

# skimage.data loaders that read files shipped in the wheel (no pooch download).
_PHOTO_LOADERS = {
    "astronaut": "astronaut", "coffee": "coffee", "chelsea": "chelsea", "rocket": "rocket",
    "hubble_deep_field": "hubble_deep_field", "immunohistochemistry": "immunohistochemistry",
    "coins": "coins", "camera": "camera", "moon": "moon", "page": "page", "text": "text",
    "horse": "horse", "cell": "cell", "colorwheel": "colorwheel", "retina": "retina",
    "brick": "brick", "grass": "grass", "gravel": "gravel", "logo": "logo", "clock": "clock",
    "motorcycle": "stereo_motorcycle",
}
PHOTO_NAMES = tuple(sorted(_PHOTO_LOADERS))


@lru_cache(maxsize=None)
def _photo(name: str) -> Image.Image:
    """A shipped skimage photo as an RGB PIL image (cached; treat as read-only)."""
    import skimage.data

    arr = getattr(skimage.data, _PHOTO_LOADERS[name])()
    if isinstance(arr, tuple):  # stereo_motorcycle -> (left, right, disparity)
        arr = arr[0]
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = np.where(arr, 255, 30).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 4:  # logo: flatten alpha onto white
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        arr = (arr[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    img = Image.fromarray(arr)
    return img.convert("RGB")


@lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow >= 10.1 ships a scalable default font; no system fonts needed.
    return ImageFont.load_default(size=max(6, int(size)))


# ---------------------------------------------------------------------------
# Creative spec and planning
# ---------------------------------------------------------------------------

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Creative:
    """Every visual decision for one banner; ``render_creative`` is a pure function of it."""

    size_class: str
    layout: str
    geom: tuple[float, float, float]  # continuous layout jitter in [0, 1)
    photo: str
    zoom: float
    center: tuple[float, float]
    flip: bool
    tone: str
    light: tuple[int, float]  # (gradient direction, strength) of a lighting falloff on the photo
    bg: RGB
    bg2: RGB  # far end of the background gradient
    gradient: int  # gradient direction, see _gradient_mask
    ink: RGB
    accent: RGB
    deco: str
    deco_pos: tuple[float, float, float]
    align: str
    price_style: str
    cta_style: str
    button_w: float  # button width as a share of its box; fixed so text edits stay local
    brand: str
    headline: str
    price: str
    cta: str

    @property
    def size(self) -> tuple[int, int]:
        return AD_SIZES[self.size_class]

    @property
    def text(self) -> str:
        return " | ".join((self.brand, self.headline, self.price, self.cta))


Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) as fractions of the canvas

LAYOUT_NAMES = {
    "rect": ("photo_top", "photo_bottom", "photo_left", "photo_right", "full_bleed", "inset"),
    "square": ("photo_top", "photo_bottom", "photo_left", "photo_right", "full_bleed", "inset"),
    "leaderboard": ("strip_left", "strip_right", "full_bleed", "split_center"),
    "skyscraper": ("photo_top", "photo_bottom", "photo_middle", "full_bleed"),
}


def _layout(size_class: str, name: str, geom: tuple[float, float, float]) -> dict:
    """Photo/head/offer boxes (and scrims) for a layout template.

    ``geom`` moves the split lines continuously, so two creatives sharing a
    template still differ in where their blocks sit (a pHash mostly sees that).
    """
    u1, u2, u3 = geom
    if size_class == "leaderboard":
        pw = 0.2 + 0.16 * u1
        if name == "strip_left":
            x = pw + 0.02
            hx = x + (0.98 - x) * (0.5 + 0.12 * u2)
            return {"photo": (0, 0, pw, 1), "head": (x, .08, hx, .92), "offer": (hx + .01, .12, .98, .88)}
        if name == "strip_right":
            hx = 0.02 + (0.96 - pw) * (0.5 + 0.12 * u2)
            return {"photo": (1 - pw, 0, 1, 1), "head": (.02, .08, hx, .92),
                    "offer": (hx + .01, .12, 1 - pw - .02, .88)}
        if name == "full_bleed":
            t = 0.55 + 0.15 * u1
            x0 = 0 if u2 < 0.5 else 1 - t
            hx = x0 + t * (0.52 + 0.08 * u3)
            return {"photo": (0, 0, 1, 1), "scrims": ((x0, 0, x0 + t, 1),),
                    "head": (x0 + .02, .08, hx, .92), "offer": (hx + .01, .12, x0 + t - .02, .88)}
        cx = 0.4 + 0.2 * u2  # split_center
        return {"photo": (cx - pw / 2, 0, cx + pw / 2, 1), "head": (.02, .08, cx - pw / 2 - .02, .92),
                "offer": (cx + pw / 2 + .02, .12, .98, .88)}
    if size_class == "skyscraper":
        if name == "photo_top":
            s = 0.34 + 0.16 * u1
            he = s + (1 - s) * (0.45 + 0.1 * u2)
            return {"photo": (0, 0, 1, s), "head": (.07, s + .02, .93, he), "offer": (.07, he + .01, .93, .97)}
        if name == "photo_bottom":
            s = 0.5 + 0.16 * u1
            he = s * (0.5 + 0.1 * u2)
            return {"photo": (0, s, 1, 1), "head": (.07, .02, .93, he), "offer": (.07, he + .01, .93, s - .02)}
        if name == "photo_middle":
            a = 0.22 + 0.1 * u1
            b = a + 0.35 + 0.1 * u2
            return {"photo": (0, a, 1, b), "head": (.07, .02, .93, a - .01), "offer": (.07, b + .02, .93, .98)}
        a, b = 0.26 + 0.08 * u1, 0.66 + 0.08 * u2  # full_bleed
        return {"photo": (0, 0, 1, 1), "scrims": ((0, 0, 1, a), (0, b, 1, 1)),
                "head": (.07, .02, .93, a - .02), "offer": (.07, b + .02, .93, .98)}
    # rect and square
    if name == "photo_top":
        s = 0.42 + 0.2 * u1
        he = s + (1 - s) * (0.5 + 0.1 * u2)
        return {"photo": (0, 0, 1, s), "head": (.06, s + .02, .94, he), "offer": (.06, he + .01, .94, .97)}
    if name == "photo_bottom":
        s = 0.38 + 0.2 * u1
        he = s * (0.52 + 0.1 * u2)
        return {"photo": (0, s, 1, 1), "head": (.06, .03, .94, he), "offer": (.06, he + .01, .94, s - .02)}
    if name in ("photo_left", "photo_right"):
        s = 0.36 + 0.26 * u1
        he = 0.5 + 0.12 * u2
        if name == "photo_left":
            return {"photo": (0, 0, s, 1), "head": (s + .04, .05, .96, he), "offer": (s + .04, he + .04, .96, .95)}
        return {"photo": (1 - s, 0, 1, 1), "head": (.04, .05, .96 - s, he), "offer": (.04, he + .04, .96 - s, .95)}
    if name == "full_bleed":
        t = 0.4 + 0.12 * u1
        y0 = 1 - t if u2 < 0.5 else 0
        return {"photo": (0, 0, 1, 1), "scrims": ((0, y0, 1, y0 + t),),
                "head": (.06, y0 + .02, .94, y0 + t * .5), "offer": (.06, y0 + t * .52, .94, y0 + t - .03)}
    m, top = 0.05 + 0.1 * u1, 0.18 + 0.08 * u2  # inset
    bottom = top + 0.36 + 0.1 * u3
    return {"photo": (m, top, 1 - m, bottom), "head": (.06, .02, .94, top - .02),
            "offer": (.06, bottom + .03, .94, .96), "rounded": True}


TONES = ("natural", "natural", "mono", "duotone", "contrast", "soft", "warm", "cool")
DECOS = ("none", "circle", "stripe", "corner", "dots", "band")


def _scheme(rnd: random.Random, adv: Advertiser) -> tuple[RGB, RGB, RGB, RGB]:
    """Background (gradient ends), ink and accent colours.

    Background lightness varies a lot because a perceptual hash only sees luminance.
    """
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in adv.primary))
    mode = rnd.choice(("light", "dark", "brand", "pastel", "secondary"))
    if mode == "light":
        bg = _hsv(h + rnd.uniform(-.05, .05), rnd.uniform(.03, .12), rnd.uniform(.93, 1.0))
    elif mode == "dark":
        bg = _hsv(h + rnd.uniform(-.1, .1), rnd.uniform(.3, .8), rnd.uniform(.1, .25))
    elif mode == "brand":
        bg = adv.primary
    elif mode == "pastel":
        bg = _hsv(h + rnd.uniform(.2, .8), rnd.uniform(.2, .45), rnd.uniform(.8, .95))
    else:
        bg = adv.secondary
    ink = _contrast_ink(bg)
    # The gradient moves away from the ink colour so text stays readable.
    shift = rnd.uniform(0.15, 0.4) * (-1 if ink[0] > 128 else 1)
    if _luma(bg) > 0.8:
        shift = -rnd.uniform(0.12, 0.28)
    bg2 = tuple(min(255, max(0, round(x + shift * 255))) for x in bg)
    accent = adv.primary
    if abs(_luma(accent) - _luma(bg)) < 0.25:  # keep buttons readable
        accent = adv.secondary if abs(_luma(adv.secondary) - _luma(bg)) >= 0.25 else ink
    return bg, bg2, ink, accent


def _plan_creative(rnd: random.Random, adv: Advertiser, size_class: str) -> Creative:
    topic = TOPICS[adv.topic]
    product = rnd.choice(topic.products)
    bg, bg2, ink, accent = _scheme(rnd, adv)
    return Creative(
        size_class=size_class,
        layout=rnd.choice(LAYOUT_NAMES[size_class]),
        geom=(round(rnd.random(), 3), round(rnd.random(), 3), round(rnd.random(), 3)),
        photo=rnd.choice(topic.photos) if rnd.random() < 0.7 else rnd.choice(PHOTO_NAMES),
        zoom=round(rnd.uniform(1.0, 2.2), 3),
        center=(round(rnd.uniform(0.2, 0.8), 3), round(rnd.uniform(0.2, 0.8), 3)),
        flip=rnd.random() < 0.5,
        tone=rnd.choice(TONES),
        light=(rnd.randrange(5), round(rnd.uniform(0.35, 0.65), 3)),
        bg=bg, bg2=bg2, gradient=rnd.randrange(5), ink=ink, accent=accent,
        deco=rnd.choice(DECOS),
        deco_pos=(round(rnd.random(), 3), round(rnd.random(), 3), round(rnd.uniform(.25, .6), 3)),
        align=rnd.choice(("left", "center")),
        price_style=rnd.choice(("text", "badge")),
        cta_style=rnd.choice(("filled", "outline", "pill")),
        button_w=round(rnd.uniform(0.7, 1.0), 3),
        brand=adv.name.upper() if adv.upper_brand else adv.name,
        headline=rnd.choice(HEADLINE_TEMPLATES).format(p=product),
        price=_price(rnd, topic),
        cta=rnd.choice(topic.ctas),
    )


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _px(box: Box, w: int, h: int) -> tuple[int, int, int, int]:
    return (round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h))


def _contrast_ink(rgb: RGB) -> RGB:
    return (250, 250, 250) if _luma(rgb) < 0.55 else (20, 20, 28)


@lru_cache(maxsize=64)
def _gradient_mask(kind: int, w: int, h: int) -> Image.Image:
    """0..255 mask: 0 vertical, 1 horizontal, 2/3 diagonals, 4 radial.

    Computed on a small grid and upsampled: it is smooth, and full-size numpy
    grids would dominate the render time of 1080x1080 creatives.
    """
    gw, gh = min(w, 96), min(h, 96)
    y, x = np.mgrid[0:gh, 0:gw].astype(np.float32)
    x /= max(gw - 1, 1)
    y /= max(gh - 1, 1)
    t = {0: y, 1: x, 2: (x + y) / 2, 3: (1 - x + y) / 2}.get(kind)
    if t is None:
        t = np.minimum(1.0, np.hypot(x - 0.5, y - 0.5) / 0.71)
    return Image.fromarray((t * 255).astype(np.uint8), "L").resize((w, h), Image.Resampling.BILINEAR)


def _background(c: Creative, w: int, h: int) -> Image.Image:
    return Image.composite(Image.new("RGB", (w, h), c.bg2), Image.new("RGB", (w, h), c.bg),
                           _gradient_mask(c.gradient, w, h))


def _treat(img: Image.Image, c: Creative) -> Image.Image:
    """Colour treatment of the photo; several change luminance so crops of the
    same photo hash differently."""
    if c.tone == "mono":
        return ImageOps.grayscale(img).convert("RGB")
    if c.tone == "duotone":
        dark = tuple(v // 5 for v in c.accent)
        return ImageOps.colorize(ImageOps.grayscale(img), dark, (255, 250, 240))
    if c.tone == "contrast":
        return ImageEnhance.Contrast(ImageOps.autocontrast(img, cutoff=2)).enhance(1.5)
    if c.tone == "soft":
        return ImageEnhance.Brightness(ImageEnhance.Contrast(img).enhance(0.6)).enhance(1.15)
    if c.tone in ("warm", "cool"):
        gains = (1.12, 1.0, 0.82) if c.tone == "warm" else (0.85, 0.98, 1.15)
        bands = [b.point(lambda v, g=g: min(255, int(v * g))) for b, g in zip(img.split(), gains)]
        return Image.merge("RGB", bands)
    return img


def _photo_region(c: Creative, bw: int, bh: int) -> Image.Image:
    """Crop the photo to the box aspect around ``center`` at ``zoom`` and resize."""
    photo = _photo(c.photo)
    pw, ph = photo.size
    aspect = bw / bh
    cw = min(pw, ph * aspect) / c.zoom
    ch = cw / aspect
    x0 = min(max(c.center[0] * pw - cw / 2, 0), pw - cw)
    y0 = min(max(c.center[1] * ph - ch / 2, 0), ph - ch)
    region = photo.resize((bw, bh), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch),
                          reducing_gap=2.0)
    if c.flip:
        region = ImageOps.mirror(region)
    region = _treat(region, c)
    # Light falloff across the photo: flat textures (brick, grass, text) would
    # otherwise all look like the same grey block to a perceptual hash.
    kind, strength = c.light
    shaded = ImageEnhance.Brightness(region).enhance(1 - strength)
    return Image.composite(shaded, region, _gradient_mask(kind, bw, bh))


def _draw_deco(draw: ImageDraw.ImageDraw, c: Creative, w: int, h: int) -> None:
    """Big background shapes: cheap layout variety that a pHash can see."""
    fx, fy, fs = c.deco_pos
    # Half-way between accent and background keeps text drawn over it readable.
    col = tuple((a + b) // 2 for a, b in zip(c.accent, c.bg))
    s = fs * max(w, h)
    if c.deco == "circle":
        cx, cy = fx * w, fy * h
        draw.ellipse((cx - s, cy - s, cx + s, cy + s), fill=col)
    elif c.deco == "stripe":
        x = fx * w
        draw.polygon([(x, 0), (x + s * 0.5, 0), (x - s * 0.3, h), (x - s * 0.8, h)], fill=col)
    elif c.deco == "corner":
        pts = [(0, 0), (s * 1.2, 0), (0, s * 1.2)] if fx < 0.5 else [(w, h), (w - s * 1.2, h), (w, h - s * 1.2)]
        draw.polygon(pts, fill=col)
    elif c.deco == "dots":
        r = max(2, min(w, h) // 25)
        for i in range(6):
            for j in range(6):
                cx, cy = fx * w * 0.5 + i * r * 4, fy * h * 0.5 + j * r * 4
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=col)
    elif c.deco == "band":
        y = fy * h
        draw.rectangle((0, y, w, y + fs * h * 0.4), fill=col)


def _split_lines(words: tuple[str, ...], n: int) -> list[str]:
    """Split words into n lines minimising the longest line (brute force; few words)."""
    best, best_len = [" ".join(words)], 10**9
    for cuts in itertools.combinations(range(1, len(words)), n - 1):
        bounds = (0, *cuts, len(words))
        lines = [" ".join(words[a:b]) for a, b in zip(bounds, bounds[1:])]
        longest = max(len(x) for x in lines)
        if longest < best_len:
            best, best_len = lines, longest
    return best


@lru_cache(maxsize=None)
def _fit_base(text: str, max_w: int, max_h: int, max_lines: int) -> tuple[int, tuple[str, ...]]:
    """Largest font size (and line split) that fits text into max_w x max_h."""
    words = tuple(text.split())
    best_size, best_lines = 6, (text,)
    for n in range(1, min(max_lines, len(words)) + 1):
        lines = _split_lines(words, n)
        lo, hi = 6, max(6, int(max_h / (n * 1.15)))
        while lo < hi:  # binary search on font size
            mid = (lo + hi + 1) // 2
            if max(_font(mid).getlength(x) for x in lines) <= max_w:
                lo = mid
            else:
                hi = mid - 1
        if lo > best_size:
            best_size, best_lines = lo, tuple(lines)
    return best_size, best_lines


def _fit(text: str, box_w: int, box_h: int, scale: int, max_lines: int = 1):
    """Fit at 1x and scale the font: a 2x re-render keeps the 1x line breaks."""
    size, lines = _fit_base(text, box_w // scale, box_h // scale, max_lines)
    return _font(size * scale), lines


def _draw_lines(draw, lines, font, box, align, fill, bold=False) -> None:
    x0, y0, x1, y1 = box
    step = font.size * 1.15
    y = y0 + ((y1 - y0) - step * len(lines)) / 2
    stroke = max(0, font.size // 16) if bold else 0
    for line in lines:
        x, anchor = ((x0 + x1) / 2, "mt") if align == "center" else (x0, "lt")
        draw.text((x, y), line, font=font, fill=fill, anchor=anchor, stroke_width=stroke, stroke_fill=fill)
        y += step


def _draw_head(draw, c: Creative, box, scale: int) -> None:
    x0, y0, x1, y1 = box
    bh = y1 - y0
    split = y0 + round(bh * 0.3)
    font, lines = _fit(c.brand, x1 - x0, round(bh * 0.26), scale)
    _draw_lines(draw, lines, font, (x0, y0, x1, split), c.align, c.accent, bold=True)
    font, lines = _fit(c.headline, x1 - x0, y1 - split, scale, max_lines=3)
    _draw_lines(draw, lines, font, (x0, split, x1, y1), c.align, c.ink)


def _draw_button(draw, text, box, c: Creative, style, scale, radius_frac=0.25) -> None:
    """Text in a rounded rectangle of fixed width (a changed label moves nothing else)."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    width = round(bw * c.button_w)
    left = x0 + (bw - width) // 2 if c.align == "center" else x0
    rect = (left, y0, left + width, y1)
    font, _ = _fit(text, round(width * 0.84), round(bh * 0.5), scale)
    radius = bh / 2 if style == "pill" else bh * radius_frac
    if style == "outline":
        draw.rounded_rectangle(rect, radius=radius, outline=c.accent, width=max(1, round(bh * 0.08)))
        ink = c.accent
    else:
        draw.rounded_rectangle(rect, radius=radius, fill=c.accent)
        ink = _contrast_ink(c.accent)
    stroke = max(0, font.size // 16)
    draw.text(((rect[0] + rect[2]) / 2, (y0 + y1) / 2), text, font=font, fill=ink, anchor="mm",
              stroke_width=stroke, stroke_fill=ink)


def _draw_offer(draw, c: Creative, box, scale: int) -> None:
    """Price and call-to-action; side by side in wide boxes, stacked otherwise."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    if bw / max(bh, 1) > 2.6:
        mid = x0 + round(bw * 0.45)
        gap = 4 * scale
        price_box, cta_box = (x0, y0, mid - gap, y1), (mid + gap, y0 + round(bh * .1), x1, y1 - round(bh * .1))
    else:
        mid = y0 + round(bh * 0.48)
        price_box, cta_box = (x0, y0, x1, mid), (x0, mid + round(bh * .06), x1, y1)
    if c.price_style == "badge":
        _draw_button(draw, c.price, price_box, c, "filled", scale, radius_frac=0.1)
    else:
        font, lines = _fit(c.price, price_box[2] - price_box[0], price_box[3] - price_box[1], scale)
        _draw_lines(draw, lines, font, price_box, c.align, c.accent, bold=True)
    _draw_button(draw, c.cta, cta_box, c, c.cta_style, scale)


def _scrim(img: Image.Image, box, colour) -> None:
    """Semi-opaque panel so text stays legible over a full-bleed photo."""
    region = img.crop(box)
    img.paste(Image.blend(region, Image.new("RGB", region.size, colour), 0.82), box[:2])


def render_creative(c: Creative, scale: int = 1) -> Image.Image:
    """Render a creative as an RGB image of ``c.size * scale`` pixels."""
    w, h = c.size[0] * scale, c.size[1] * scale
    lay = _layout(c.size_class, c.layout, c.geom)
    img = _background(c, w, h)
    _draw_deco(ImageDraw.Draw(img), c, w, h)
    pbox = _px(lay["photo"], w, h)
    photo = _photo_region(c, pbox[2] - pbox[0], pbox[3] - pbox[1])
    if lay.get("rounded"):
        mask = Image.new("L", photo.size, 0)
        ImageDraw.Draw(mask).rounded_rectangle((0, 0, *photo.size), radius=min(photo.size) // 8, fill=255)
        img.paste(photo, pbox[:2], mask)
    else:
        img.paste(photo, pbox[:2])
    for sbox in lay.get("scrims", ()):
        _scrim(img, _px(sbox, w, h), c.bg)
    draw = ImageDraw.Draw(img)
    _draw_head(draw, c, _px(lay["head"], w, h), scale)
    _draw_offer(draw, c, _px(lay["offer"], w, h), scale)
    return img


# ---------------------------------------------------------------------------
# Encoding, variants, invalid files
# ---------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _dct_matrix(n: int = 32, k: int = 8) -> np.ndarray:
    i = np.arange(n)
    return np.cos(np.pi * np.arange(k)[:, None] * (2 * i[None, :] + 1) / (2 * n))


def phash_bits(img: Image.Image) -> np.ndarray:
    """64-bit DCT perceptual hash as bools (same recipe as ``imagehash.phash``)."""
    px = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    m = _dct_matrix()
    low = m @ px @ m.T
    return (low > np.median(low)).flatten()


def _encode(img: Image.Image, fmt: str, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpg":
        img.save(buf, "JPEG", quality=quality, **JPEG_KW)
    else:
        img.save(buf, "PNG", **PNG_KW)
    return buf.getvalue()


def _decode_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def _encode_original(img: Image.Image, mode: str, quality: int) -> tuple[bytes, str]:
    """Encode an original; a few use the modes ingestion has to normalise."""
    if mode == "cmyk":
        return _encode(img.convert("CMYK"), "jpg", quality), "jpg"
    if mode == "palette":
        pal = img.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        return _encode(pal, "png"), "png"
    if mode == "rgba":
        alpha = Image.new("L", img.size, 0)
        ImageDraw.Draw(alpha).rounded_rectangle((0, 0, *img.size), radius=min(img.size) // 10, fill=255)
        rgba = img.copy()
        rgba.putalpha(alpha)
        return _encode(rgba, "png"), "png"
    if mode == "png":
        return _encode(img, "png"), "png"
    return _encode(img, "jpg", quality), "jpg"


def _make_variant(kind: str, rnd: random.Random, c: Creative, img: Image.Image,
                  quality: int) -> tuple[bytes, str, Creative]:
    """Bytes, extension and (possibly changed) spec of one variant of an original.

    ``img`` is the original as decoded from its file: file-level variants start
    from what was published, like real re-uploads do.
    """
    if kind == "reencode":
        return _encode(img, "jpg", rnd.randint(35, 70)), "jpg", c
    if kind == "resize":
        f = rnd.uniform(0.5, 0.9)
        size = (max(8, round(img.width * f)), max(8, round(img.height * f)))
        return _encode(img.resize(size, Image.Resampling.LANCZOS), "jpg", rnd.randint(75, 92)), "jpg", c
    if kind == "crop":
        # Remove 1-4 % of each dimension in total (trimmed borders), shared by both sides.
        dw, dh = round(img.width * rnd.uniform(.01, .04)), round(img.height * rnd.uniform(.01, .04))
        left, top = round(dw * rnd.uniform(.3, .7)), round(dh * rnd.uniform(.3, .7))
        box = (left, top, img.width - (dw - left), img.height - (dh - top))
        return _encode(img.crop(box), "jpg", rnd.randint(80, 92)), "jpg", c
    if kind == "text_change":
        c2 = _text_change(rnd, c)
        return _encode(render_creative(c2), "jpg", quality), "jpg", c2
    if kind == "rerender_2x":
        return _encode(render_creative(c, scale=2), "jpg", quality), "jpg", c
    raise ValueError(kind)


def _relayout(rnd: random.Random, c: Creative) -> Creative:
    """The same photo crop and copy in another standard size (aspect clearly different)."""
    wide = c.size_class in ("rect", "square")  # square <-> rect would be too similar
    sizes = ("leaderboard", "skyscraper") if wide else tuple(
        s for s in ("rect", "leaderboard", "skyscraper") if s != c.size_class)
    size_class = rnd.choice(sizes)
    return replace(c, size_class=size_class, layout=rnd.choice(LAYOUT_NAMES[size_class]))


def _text_change(rnd: random.Random, c: Creative) -> Creative:
    """The same creative with one text element edited the way advertisers do:
    a new price (another leading digit) or a CTA of similar length."""
    digits = [i for i, ch in enumerate(c.price) if ch.isdigit()]
    if digits and rnd.random() < 0.6:
        i = digits[0]
        new_digit = rnd.choice([d for d in "123456789" if d != c.price[i]])
        return replace(c, price=c.price[:i] + new_digit + c.price[i + 1:])
    ctas = _all_ctas()
    similar = [x for x in ctas if x != c.cta and abs(len(x) - len(c.cta)) <= 2]
    return replace(c, cta=rnd.choice(similar or [x for x in ctas if x != c.cta]))


@lru_cache(maxsize=None)
def _all_ctas() -> tuple[str, ...]:
    return tuple(sorted({x for t in TOPICS.values() for x in t.ctas}))


def _bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A valid 1-bit PNG of width x height that is tiny on disk (~200 KB).

    Identical all-zero chunks are deflated once after a full flush (which resets
    the compressor's history) and the compressed block is repeated, so this
    takes ~0.1 s instead of compressing 200 MB.
    """
    row = width // 8 + 1  # filter byte + packed bits
    rows_per_chunk = 1000
    assert height % rows_per_chunk == 0
    chunk = bytes(row * rows_per_chunk)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    adler = 1
    for _ in range(height // rows_per_chunk):
        adler = zlib.adler32(chunk, adler)
    idat = b"\x78\xda" + block * (height // rows_per_chunk) + tail + struct.pack(">I", adler)

    def png_chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def _invalid_files(valid_jpeg: bytes) -> list[tuple[str, bytes, str]]:
    """(extension, bytes, problem) for the deliberately broken 'creatives'."""
    return [
        ("jpg", b"", "zero-byte file"),
        ("jpg", valid_jpeg[: len(valid_jpeg) * 2 // 5], "truncated JPEG (data cut at 40%)"),
        ("jpg", b"<html><head><title>404 Not Found</title></head>\n<body>creative not found</body></html>\n",
         "not an image (HTML error page saved as .jpg)"),
        ("png", _bomb_png(), "decompression bomb (PNG header claims 40000x40000 pixels)"),
    ]


# ---------------------------------------------------------------------------
# Ads: plan, render, write
# ---------------------------------------------------------------------------


@dataclass
class AdRow:
    kind: str
    group: int  # index of the original creative
    spec: Creative
    advertiser: Advertiser
    campaign: str
    day: int
    mode: str = "jpg"  # encoding of originals
    quality: int = 90
    ad_id: str = ""
    path: str = ""
    text: str = ""
    problem: str = ""


def _weighted(rnd: random.Random, weights: dict[str, float]) -> str:
    keys = sorted(weights)
    return rnd.choices(keys, weights=[weights[k] for k in keys])[0]


def _plan_ads(rnd: random.Random, advertisers: list[Advertiser], n_ads: int) -> list[AdRow]:
    rows: list[AdRow] = []
    originals: list[AdRow] = []
    for i in range(n_ads):
        adv = advertisers[i % len(advertisers)] if i < len(advertisers) else rnd.choice(advertisers)
        spec = _plan_creative(rnd, adv, _weighted(rnd, SIZE_WEIGHTS))
        mode = "png" if rnd.random() < 0.08 else "jpg"
        originals.append(AdRow("original", i, spec, adv, rnd.choice(adv.campaigns),
                               day=rnd.choices((0, 1, 2), (5, 3, 2))[0], mode=mode,
                               quality=rnd.choice((82, 85, 88, 90, 92))))
    # Guarantee the colour modes ingestion must normalise, whatever n_ads is.
    k = max(1, n_ads // 80)
    special = rnd.sample(range(n_ads), min(n_ads, 3 * k))
    for j, idx in enumerate(special):
        originals[idx].mode = ("cmyk", "palette", "rgba")[j % 3]
    rows.extend(originals)

    with_variants = sorted(rnd.sample(range(n_ads), max(1, round(n_ads * VARIANT_SHARE))))
    pending: list[str] = []  # first kinds go round-robin so every kind occurs even for small n
    for idx in with_variants:
        orig = originals[idx]
        # 2x of a 1080x1080 square would be a 2160x2160 file: not worth the bytes.
        allowed = [k for k in VARIANT_KINDS if not (k == "rerender_2x" and orig.spec.size_class == "square")]
        pending = pending or list(VARIANT_KINDS)
        first = next((k for k in pending if k in allowed), allowed[0])
        if first in pending:
            pending.remove(first)
        rest = rnd.sample([k for k in allowed if k != first], rnd.choices((0, 1, 2), (5, 3, 2))[0])
        for kind in [first, *rest]:
            rows.append(_variant_row(rnd, orig, kind))
    for idx in sorted(rnd.sample(range(n_ads), max(1, round(n_ads * RELAYOUT_SHARE)))):
        rows.append(_variant_row(rnd, originals[idx], "relayout"))

    for _ in range(4):  # the invalid files get manifest rows like any other ad
        adv = rnd.choice(advertisers)
        rows.append(AdRow("invalid", -1, _plan_creative(rnd, adv, "rect"), adv,
                          rnd.choice(adv.campaigns), day=rnd.randrange(len(DAYS))))
    return rows


def _variant_row(rnd: random.Random, orig: AdRow, kind: str) -> AdRow:
    # Most variants show up on a later day than their original (cross-day dedup).
    later = orig.day + rnd.randint(1, len(DAYS) - 1 - orig.day) if rnd.random() < 0.7 else orig.day
    return AdRow(kind, orig.group, orig.spec, orig.advertiser, orig.campaign,
                 day=later, quality=orig.quality)


class _Distinct:
    """pHashes of everything accepted so far, to keep distinct creatives hash-distinct."""

    def __init__(self) -> None:
        self.bits = np.zeros((0, 64), dtype=bool)
        self.groups = np.zeros(0, dtype=np.int64)
        self.rejected = 0

    def accept(self, img: Image.Image, group: int) -> bool:
        """Record img unless it is within MIN_ORIGINAL_DISTANCE of another group."""
        h = phash_bits(img)
        dist = (self.bits != h).sum(axis=1)
        if (dist[self.groups != group] <= MIN_ORIGINAL_DISTANCE).any():
            self.rejected += 1
            return False
        self.bits = np.vstack([self.bits, h])
        self.groups = np.append(self.groups, group)
        return True


def _render_distinct(spec: Creative, group: int, seen: _Distinct,
                     replan: Callable[[], Creative]) -> tuple[Image.Image, Creative]:
    """Render spec, drawing a new one via ``replan`` while it looks like another creative."""
    img = render_creative(spec)
    for _ in range(MAX_REPLANS):
        if seen.accept(img, group):
            break
        spec = replan()
        img = render_creative(spec)
    return img, spec


def _near_variant(kind: str, rnd: random.Random, orig: AdRow, orig_img: Image.Image,
                  orig_bits: np.ndarray, stats: dict[str, int]) -> tuple[bytes, str, Creative]:
    """Draw a hash variant, re-drawing while it is not near-identical to its original."""
    best = None
    for attempt in range(MAX_VARIANT_TRIES):
        stats["redrawn_variants"] += attempt == 1
        data, ext, spec = _make_variant(kind, rnd, orig.spec, orig_img, orig.quality)
        dist = int((phash_bits(_decode_rgb(data)) != orig_bits).sum())
        if best is None or dist < best[0]:
            best = (dist, data, ext, spec)
        if dist <= MAX_VARIANT_DISTANCE:
            break
    return best[1:]


def _write_ads(out: Path, rows: list[AdRow], rnd: random.Random, progress: Progress,
               stats: dict[str, int]) -> list[dict]:
    """Render and write every ad file; fills ad_id/path/text and returns invalid entries."""
    groups: dict[int, list[AdRow]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    # Each original right before its variants, so only one decoded original is held.
    ordered = [r for g in sorted(groups) for r in sorted(groups[g], key=lambda r: (r.kind != "original", r.ad_id))]
    seen = _Distinct()
    orig = orig_img = orig_bits = None
    invalid_payloads = None
    invalid = []
    for done, row in enumerate(ordered, 1):
        if row.kind == "original":
            img, row.spec = _render_distinct(row.spec, row.group, seen,
                                             lambda: _plan_creative(rnd, row.advertiser, row.spec.size_class))
            data, ext = _encode_original(img, row.mode, row.quality)
            orig, orig_img = row, _decode_rgb(data)
            orig_bits = phash_bits(orig_img)
        elif row.kind == "invalid":
            if invalid_payloads is None:
                invalid_payloads = _invalid_files(_encode(render_creative(row.spec), "jpg", 85))
            ext, data, row.problem = invalid_payloads.pop(0)
        elif row.kind == "relayout":
            img, row.spec = _render_distinct(_relayout(rnd, orig.spec), row.group, seen,
                                             lambda: _relayout(rnd, orig.spec))
            data, ext = _encode(img, "jpg", row.quality), "jpg"
        else:
            data, ext, row.spec = _near_variant(row.kind, rnd, orig, orig_img, orig_bits, stats)
        row.path = f"ads/{row.ad_id}.{ext}"
        row.text = row.spec.text
        (out / row.path).write_bytes(data)
        if row.kind == "invalid":
            invalid.append({"path": row.path, "problem": row.problem})
        if progress:
            progress("ads", done, len(ordered))
    stats["replanned_for_distinctness"] = seen.rejected
    return invalid


def _landing_url(row: AdRow) -> str:
    return f"https://www.{row.advertiser.slug}.example/{row.campaign}?utm_source=adlens&utm_content={row.ad_id}"


def _write_manifest(out: Path, rows: list[AdRow]) -> None:
    with open(out / "ads.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["path", "ad_id", "advertiser", "campaign", "text", "landing_url", "day"])
        for r in sorted(rows, key=lambda r: r.ad_id):
            w.writerow([r.path, r.ad_id, r.advertiser.name, f"{r.advertiser.slug}-{r.campaign}",
                        r.text, _landing_url(r), DAYS[r.day]])


def _duplicates(rows: list[AdRow], invalid: list[dict]) -> dict:
    groups: dict[int, list[AdRow]] = {}
    for r in rows:
        if r.kind != "invalid":
            groups.setdefault(r.group, []).append(r)
    out_groups = []
    for g in sorted(groups):
        members = sorted(groups[g], key=lambda r: (r.kind != "original", r.ad_id))
        if len(members) < 2:
            continue
        out_groups.append({
            "group_id": f"g{len(out_groups) + 1:04d}",
            "members": [{"ad_id": m.ad_id, "path": m.path, "kind": m.kind} for m in members],
        })
    return {
        "groups": out_groups,
        "invalid": invalid,
        "hash_kinds": HASH_KINDS,
        "notes": ("Each group is one creative: its original plus near-duplicates. Pairs of members whose "
                  "kinds are both in hash_kinds should be caught by perceptual hashing (reencode: other "
                  "JPEG quality 35-70; resize: 50-90% same aspect; crop: 1-4% of width and height trimmed; "
                  "text_change: price digit or CTA label re-rendered; rerender_2x: rendered at twice "
                  "the size). "
                  "'relayout' members are the same photo crop and copy rendered in another standard "
                  "size: hashes are not expected to match them, embeddings are. Ads not listed in any "
                  "group are unique. 'invalid' files are listed in ads.csv but must be rejected. "
                  f"By construction, creatives of different groups are more than {MIN_ORIGINAL_DISTANCE} "
                  "bits apart in 64-bit pHash (originals and relayouts), and hash variants are "
                  f"at most {MAX_VARIANT_DISTANCE} bits from their original when achievable."),
    }


# ---------------------------------------------------------------------------
# Articles
# ---------------------------------------------------------------------------

TOPIC_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "travel": {"nouns": ("itinerary", "booking process", "hotel selection", "layover", "guided tour",
                         "cancellation policy", "loyalty scheme", "beach transfer"),
               "places": ("Lisbon", "Kyoto", "Reykjavik", "Cape Town", "Patagonia", "the Amalfi Coast"),
               "audience": ("budget travellers", "families", "digital nomads", "honeymooners"),
               "facts": ("Airfares to {place} have {trend} by {pct}% since last spring.",
                         "Hotels in {place} report occupancy above {pct}% for the summer.",
                         "Travel agents say {audience} now book {num} weeks ahead on average.",
                         "Tourism boards in {place} expect {num} percent more visitors this year.",
                         "Flexible cancellation has become a deciding factor for {audience}.")},
    "food": {"nouns": ("recipe cards", "packaging", "portion size", "delivery window", "flavour",
                       "ingredient list", "subscription plan", "roast profile"),
             "places": ("Brooklyn", "Melbourne", "Lyon", "Oaxaca", "Naples", "Osaka"),
             "audience": ("home cooks", "busy parents", "coffee lovers", "students"),
             "facts": ("Grocery prices have {trend} by {pct}% over the past year.",
                       "Meal-kit sales in {place} grew to {num} thousand boxes a month.",
                       "Chefs in {place} say {audience} are cooking at home more than ever.",
                       "Delivery apps in {place} now handle {num} percent of restaurant orders.",
                       "Nutritionists note that {audience} increasingly read ingredient labels.")},
    "tech": {"nouns": ("battery life", "setup process", "companion app", "build quality", "firmware",
                       "noise cancellation", "sync speed", "support team"),
             "places": ("Berlin", "Austin", "Seoul", "Bangalore", "Toronto", "Tallinn"),
             "audience": ("remote workers", "gamers", "photographers", "small studios"),
             "facts": ("Shipments of connected devices have {trend} by {pct}% this quarter.",
                       "Analysts in {place} expect {num} million units to sell this year.",
                       "Surveys show {audience} replace their gear every {num} years.",
                       "Repair shops in {place} report that batteries are the most common fault.",
                       "Subscription fatigue is real: {audience} now juggle {num} services on average.")},
    "fashion": {"nouns": ("fit", "stitching", "fabric", "colour range", "sizing guide", "return policy",
                          "lining", "cut"),
                "places": ("Paris", "Milan", "Copenhagen", "Tokyo", "London", "Antwerp"),
                "audience": ("young professionals", "minimalists", "trend watchers", "students"),
                "facts": ("Second-hand clothing sales have {trend} by {pct}% in {place}.",
                          "Stylists in {place} predict {num} key looks for the season.",
                          "Retail data suggests {audience} keep a garment {num} years on average.",
                          "Textile prices have {trend} by {pct}% since the start of the year.",
                          "Boutiques in {place} say {audience} ask more about fabric origins than before.")},
    "finance": {"nouns": ("interest rate", "mobile app", "fee structure", "sign-up flow", "customer service",
                          "rewards programme", "claims process", "dashboard"),
                "places": ("New York", "Frankfurt", "Singapore", "Zurich", "Sydney", "Dublin"),
                "audience": ("first-time savers", "freelancers", "retirees", "small businesses"),
                "facts": ("Average savings rates have {trend} by {pct}% since January.",
                          "Regulators in {place} counted {num} new fintech licences this year.",
                          "Advisers say {audience} should keep {num} months of expenses in reserve.",
                          "Card spending in {place} has {trend} by {pct}% over the quarter.",
                          "Consumer groups warn {audience} to read the small print on introductory offers.")},
    "auto": {"nouns": ("range", "handling", "charging speed", "warranty", "infotainment system",
                       "fuel economy", "dealer network", "ride comfort"),
             "places": ("Detroit", "Stuttgart", "Turin", "Nagoya", "Gothenburg", "Los Angeles"),
             "audience": ("commuters", "young families", "road-trippers", "fleet managers"),
             "facts": ("Electric vehicle registrations have {trend} by {pct}% year on year.",
                       "Dealers in {place} report waiting lists of {num} weeks.",
                       "Insurers note that {audience} drive {num} thousand miles a year on average.",
                       "Used-car prices have {trend} by {pct}% over the past twelve months.",
                       "Public chargers in {place} now number {num} thousand, double the figure of two years ago.")},
    "health": {"nouns": ("onboarding", "daily routine", "ingredient quality", "appointment booking",
                         "tracking features", "taste", "consultation", "side effects"),
               "places": ("Copenhagen", "Vancouver", "Auckland", "Boston", "Stockholm", "Edinburgh"),
               "audience": ("shift workers", "new parents", "older adults", "athletes"),
               "facts": ("Spending on wellness products has {trend} by {pct}% in two years.",
                         "Clinics in {place} now offer {num} thousand screenings a month.",
                         "Doctors say {audience} sleep {num} hours less than recommended.",
                         "Wearable sales have {trend} by {pct}% as {audience} track their sleep.",
                         "Pharmacists in {place} report steady demand for {num} core supplements.")},
    "sports": {"nouns": ("grip", "cushioning", "frame weight", "training plan", "membership perks",
                         "durability", "sizing", "coaching"),
               "places": ("Boulder", "Chamonix", "Barcelona", "Nairobi", "Queenstown", "Portland"),
               "audience": ("weekend runners", "cyclists", "climbers", "beginners"),
               "facts": ("Race entries have {trend} by {pct}% compared with last season.",
                         "Gyms in {place} added {num} thousand members in the spring.",
                         "Coaches say {audience} train {num} times a week on average.",
                         "Sporting goods sales have {trend} by {pct}% since the winter.",
                         "Physiotherapists in {place} see more overuse injuries among {audience}.")},
    "home": {"nouns": ("assembly", "finish", "delivery", "materials", "energy savings", "warranty",
                       "cleaning performance", "design"),
             "places": ("Stockholm", "Amsterdam", "Portland", "Kyoto", "Melbourne", "Montreal"),
             "audience": ("renters", "first-time buyers", "pet owners", "DIY fans"),
             "facts": ("Home improvement spending has {trend} by {pct}% this year.",
                       "Retailers in {place} sold {num} thousand units during the spring sale.",
                       "Surveys find {audience} redecorate every {num} years.",
                       "Furniture delivery times in {place} have {trend} to about {num} days.",
                       "Energy bills remain the top concern for {audience}, according to surveys.")},
    "entertainment": {"nouns": ("storyline", "line-up", "ticketing", "soundtrack", "visual effects",
                                "streaming quality", "pacing", "level design"),
                      "places": ("Los Angeles", "Austin", "Glastonbury", "Montreal", "Seoul", "Berlin"),
                      "audience": ("binge watchers", "festival goers", "casual gamers", "film buffs"),
                      "facts": ("Streaming subscriptions have {trend} by {pct}% over the year.",
                                "Venues in {place} sold {num} thousand tickets in a weekend.",
                                "Studios say {audience} now discover titles through short clips.",
                                "Box office takings in {place} have {trend} by {pct}% year on year.",
                                "Ticket resale prices for big shows can reach {num} times face value.")},
}

POS_ADJ = ("excellent", "thoughtful", "impressive", "polished", "generous", "delightful", "reliable",
           "refreshing", "well designed", "good value")
NEG_ADJ = ("disappointing", "clumsy", "overpriced", "unreliable", "confusing", "flimsy", "frustrating",
           "underwhelming", "slow", "inconsistent")
NEU_ADJ = ("standard", "familiar", "adequate", "conventional", "predictable", "serviceable")
FIRST = ("Maya", "Jonas", "Priya", "Tomás", "Aiko", "Lena", "Omar", "Grace", "Nikolai", "Zoe", "Kwame", "Ines")
LAST = ("Alvarez", "Berg", "Chen", "Dubois", "Okafor", "Rossi", "Schmidt", "Tanaka", "Walsh", "Novak")
ROLES = ("reviewer", "consultant", "shop owner", "teacher", "engineer", "blogger", "analyst", "nurse")

INTRO = (
    "{brand} has launched its {product}, aimed squarely at {audience}.",
    "This week {brand} put the {product} in front of {audience}, and the reaction has been {reaction}.",
    "Few {topic} brands have been as visible lately as {brand}, whose {product} campaign is hard to miss.",
    "We spent {num} days with the {product} from {brand} to see whether it lives up to the advertising.",
    "Among {audience} in {place}, the {product} from {brand} has become a talking point.",
)
TONE_SENTENCES = {
    "positive": (
        "The {noun} is genuinely {adj}, and it shows in the details.",
        '{person}, a {role} in {place}, called it "the most {adj} option I have tried this year."',
        "Even the {noun2} feels {adj}, which is rare at this price.",
        "It is easy to see why {audience} are recommending it to friends.",
        "{brand} clearly listened to feedback: the {noun} is much improved.",
        "The offer of {price} makes an already {adj} package hard to resist.",
    ),
    "negative": (
        "Unfortunately the {noun} feels {adj} next to its rivals.",
        '{person}, a {role} in {place}, was blunt: "I expected more, and the {noun} was {adj}."',
        "Several readers complained about the {noun2}, and support was slow to respond.",
        "For {audience}, the {noun} is likely to be a deal breaker.",
        "Despite the {price} promotion, the overall experience is {adj}.",
        "We ran into problems with the {noun2} more than once during testing.",
    ),
    "neutral": (
        "The {noun} is {adj}; it neither stands out nor lets you down.",
        '{person}, a {role} in {place}, said it "does what it says, no more and no less."',
        "Whether the {noun2} justifies the price depends on how often you need it.",
        "{brand} says further updates to the {noun} will follow later in the year.",
        "The {price} offer runs for a limited time, according to the company.",
        "Comparable options exist, and {audience} may want to shop around.",
    ),
}
CONCLUSION = {
    "positive": ("All told, the {product} is an easy recommendation.",
                 "If you are among the {audience}, {brand} deserves a close look.",
                 "Our verdict: {adj}, and well worth the money."),
    "negative": ("All told, the {product} is hard to recommend for now.",
                 "Unless {brand} fixes the {noun}, we would wait.",
                 "Our verdict: {adj}, and not worth the hype."),
    "neutral": ("All told, the {product} is a sensible if unremarkable choice.",
                "It is worth comparing {brand} with a couple of alternatives first.",
                "Our verdict: {adj}, and fine for most people."),
}
GENERIC = (
    "{brand} did not share sales figures but said demand had been strong.",
    "The {product} is available now, with the {price} offer running for a limited time.",
    "Availability varies by region, and {audience} in {place} got it first.",
    "We paid for the {product} ourselves; {brand} had no input into this article.",
    "Competitors are expected to respond with offers of their own before long.",
    "The launch is backed by a campaign running across news sites and social media.",
)
TITLES = {
    "positive": ("Why {brand}'s {product} is winning over {audience}", "{product}: {brand} gets it right",
                 "Hands-on: the {product} from {brand} impresses"),
    "negative": ("{brand}'s {product} fails to impress", "{brand}'s {product}: worth the money? Not yet",
                 "Hands-on: the {product} from {brand} falls short"),
    "neutral": ("What to know about the {product} from {brand}", "{brand} {product}: first look",
                "The {product} from {brand}, reviewed"),
}


_PROPER = {"Lisbon", "Alpine", "Greek", "Tokyo", "Northern", "Rail", "Sci-fi", "Jazz"}


def _product_of(headline: str) -> str:
    """Recover the product phrase from a rendered headline, lower-cased for prose."""
    for t in TOPICS.values():
        for p in t.products:
            if p in headline:
                first = p.split()[0]
                return p if first in _PROPER or not first[1:].islower() else p[0].lower() + p[1:]
    return headline


def _article(rnd: random.Random, idx: int, row: AdRow) -> dict:
    topic = row.advertiser.topic
    words = TOPIC_WORDS[topic]
    tone = rnd.choices(("positive", "neutral", "negative"), (4, 3, 3))[0]
    adj_pool = {"positive": POS_ADJ, "negative": NEG_ADJ, "neutral": NEU_ADJ}[tone]

    def fill(template: str) -> str:
        nouns = rnd.sample(words["nouns"], 2)
        return template.format(
            brand=row.advertiser.name, product=_product_of(row.spec.headline),
            audience=rnd.choice(words["audience"]), place=rnd.choice(words["places"]),
            topic=topic, noun=nouns[0], noun2=nouns[1], adj=rnd.choice(adj_pool),
            person=f"{rnd.choice(FIRST)} {rnd.choice(LAST)}", role=rnd.choice(ROLES),
            price=row.spec.price, num=rnd.randint(2, 40), pct=rnd.randint(3, 45),
            trend=rnd.choice(("risen", "fallen", "climbed", "dropped", "edged up")),
            reaction={"positive": "enthusiastic", "negative": "lukewarm", "neutral": "mixed"}[tone],
        )

    # Draw sentences without replacement so an article never repeats itself.
    facts = rnd.sample(words["facts"], len(words["facts"]))
    opinions = rnd.sample(TONE_SENTENCES[tone], len(TONE_SENTENCES[tone]))
    generic = rnd.sample(GENERIC, len(GENERIC))
    paragraphs = [" ".join([fill(rnd.choice(INTRO)), fill(facts.pop())])]
    for _ in range(rnd.randint(2, 3)):
        sents = [opinions.pop(), opinions.pop(), rnd.choice((facts, generic)).pop()]
        rnd.shuffle(sents)
        paragraphs.append(" ".join(fill(x) for x in sents))
    paragraphs.append(" ".join([fill(generic.pop()), fill(rnd.choice(CONCLUSION[tone]))]))
    title = fill(rnd.choice(TITLES[tone]))
    title = title[0].upper() + title[1:]
    article_id = f"art{idx + 1:05d}"
    return {"article_id": article_id, "title": title, "text": "\n\n".join(paragraphs), "topic": topic,
            "ad_id": row.ad_id, "url": f"https://news.example/{topic}/{_slug(title)}-{article_id}",
            "tone": tone}


def _write_articles(out: Path, rnd: random.Random, rows: list[AdRow], n: int) -> list[dict]:
    originals = [r for r in rows if r.kind == "original"]
    targets = rnd.sample(originals, n) if n <= len(originals) else [rnd.choice(originals) for _ in range(n)]
    articles = [_article(rnd, i, r) for i, r in enumerate(targets)]
    with open(out / "articles.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for a in articles:
            fh.write(json.dumps(a, ensure_ascii=True) + "\n")
    return articles


# ---------------------------------------------------------------------------
# Products
# ---------------------------------------------------------------------------

PRODUCT_CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # category: (title adjectives, item names)
    "electronics": (("Wireless", "Smart", "Compact", "Pro"), ("Tablet", "Phone", "E-reader", "Monitor")),
    "apparel": (("Organic", "Classic", "Relaxed", "Striped"), ("T-shirt", "Sweatshirt", "Polo", "Tee")),
    "footwear": (("Trail", "Everyday", "Leather", "Lightweight"), ("Sneakers", "Runners", "Loafers", "Boots")),
    "kitchen": (("Ceramic", "Insulated", "Enamel", "Stoneware"), ("Mug", "Cup", "Tumbler", "Latte Mug")),
    "furniture": (("Oak", "Scandi", "Stackable", "Walnut"), ("Chair", "Stool", "Side Chair", "Armchair")),
    "sports": (("Match", "Training", "Pro", "Junior"), ("Football", "Ball", "Volleyball", "Handball")),
    "beauty": (("Hydrating", "Gentle", "Vitamin C", "Night"), ("Serum", "Lotion", "Cleanser", "Toner")),
    "toys": (("Wooden", "Rainbow", "Stacking", "Building"), ("Blocks", "Block Set", "Cubes", "Bricks")),
    "books": (("Bestselling", "Illustrated", "Collected", "Pocket"), ("Novels", "Box Set", "Cookbooks", "Stories")),
    "luggage": (("Carry-on", "Hard-shell", "Expandable", "Cabin"), ("Suitcase", "Trolley", "Spinner", "Case")),
}


def _draw_product(category: str, rnd: random.Random, size: int = 256) -> Image.Image:
    """One simple object per category: shape identifies the category, colours vary."""
    hue = rnd.random()
    col = _hsv(hue, rnd.uniform(.5, .9), rnd.uniform(.45, .9))
    dark = tuple(v // 3 for v in col)
    light = _hsv(hue, .1, .97)
    img = Image.new("RGB", (size, size), _hsv(rnd.random(), rnd.uniform(.02, .12), rnd.uniform(.9, 1.0)))
    d = ImageDraw.Draw(img)
    k = rnd.uniform(0.8, 1.05)  # object scale around the centre
    s = size / 256 * k
    ox = (128 + rnd.uniform(-14, 14)) * size / 256 - 128 * s
    oy = (128 + rnd.uniform(-14, 14)) * size / 256 - 128 * s

    def P(*pts):  # shift and scale a polygon drawn on a 256 grid
        return [(x * s + ox, y * s + oy) for x, y in pts]

    d.ellipse(P((50, 215), (206, 235)), fill=(200, 200, 200))  # floor shadow
    if category == "electronics":
        d.rounded_rectangle(P((78, 30), (178, 220)), radius=14 * s, fill=dark)
        d.rectangle(P((88, 46), (168, 196)), fill=col)
        d.ellipse(P((122, 202), (134, 214)), fill=light)
    elif category == "apparel":
        d.polygon(P((80, 50), (176, 50), (220, 90), (195, 115), (176, 100), (176, 215), (80, 215),
                    (80, 100), (61, 115), (36, 90)), fill=col)
        d.ellipse(P((108, 40), (148, 66)), fill=light)
    elif category == "footwear":
        d.polygon(P((40, 170), (60, 110), (110, 105), (150, 140), (215, 155), (220, 190), (40, 190)), fill=col)
        d.rectangle(P((40, 190), (220, 202)), fill=dark)
        for i in range(3):
            d.line(P((85 + 14 * i, 118), (100 + 14 * i, 132)), fill=light, width=max(1, round(4 * s)))
    elif category == "kitchen":
        d.ellipse(P((150, 95), (215, 170)), outline=col, width=max(2, round(14 * s)))
        d.rounded_rectangle(P((60, 70), (170, 215)), radius=10 * s, fill=col)
        for i in range(3):
            d.arc(P((80 + 25 * i, 20), (100 + 25 * i, 60)), 90, 270, fill=dark, width=max(1, round(3 * s)))
    elif category == "furniture":
        d.rectangle(P((70, 130), (190, 148)), fill=col)
        d.rectangle(P((70, 40), (88, 130)), fill=col)
        for x in (72, 172):
            d.rectangle(P((x, 148), (x + 14, 220)), fill=dark)
    elif category == "sports":
        d.ellipse(P((58, 40), (198, 180)), fill=light, outline=dark, width=max(1, round(3 * s)))
        d.regular_polygon((128 * s + ox, 110 * s + oy, 26 * s), 5, fill=col)
        for a in range(5):
            ang = np.deg2rad(a * 72 - 90)
            d.line([(128 * s + ox + 26 * s * np.cos(ang), 110 * s + oy + 26 * s * np.sin(ang)),
                    (128 * s + ox + 66 * s * np.cos(ang), 110 * s + oy + 66 * s * np.sin(ang))],
                   fill=dark, width=max(1, round(3 * s)))
    elif category == "beauty":
        d.rounded_rectangle(P((95, 80), (161, 215)), radius=18 * s, fill=col)
        d.rectangle(P((113, 45), (143, 80)), fill=dark)
        d.rectangle(P((105, 130), (151, 170)), fill=light)
    elif category == "toys":
        cols = [_hsv(hue + k / 3, .8, .9) for k in range(3)]
        d.rectangle(P((50, 150), (115, 215)), fill=cols[0])
        d.rectangle(P((130, 150), (195, 215)), fill=cols[1])
        d.rectangle(P((90, 85), (155, 150)), fill=cols[2])
    elif category == "books":
        for i in range(4):
            y = 200 - i * 36
            shade = _hsv(hue + i * 0.13, .6, .4 + .12 * i)
            d.rectangle(P((60 + 6 * (i % 2), y - 30), (196 - 6 * (i % 2), y)), fill=shade)
            d.line(P((70, y - 15), (120, y - 15)), fill=light, width=max(1, round(3 * s)))
    elif category == "luggage":
        d.rounded_rectangle(P((70, 70), (186, 210)), radius=16 * s, fill=col)
        d.rounded_rectangle(P((105, 40), (151, 72)), radius=8 * s, outline=dark, width=max(2, round(6 * s)))
        for x in (90, 166):
            d.line(P((x, 80), (x, 200)), fill=dark, width=max(1, round(4 * s)))
            d.ellipse(P((x - 8, 208), (x + 8, 224)), fill=dark)
    return img


def _write_products(out: Path, rnd: random.Random, n: int, progress: Progress) -> list[dict]:
    cats = sorted(PRODUCT_CATEGORIES)
    rows = []
    for i in range(n):
        cat = cats[i % len(cats)]
        adjs, items = PRODUCT_CATEGORIES[cat]
        pid = f"p{i + 1:05d}"
        title = f"{rnd.choice(adjs)} {rnd.choice(items)} {rnd.choice(('', 'II', 'Mini', 'Plus', 'Lite'))}".strip()
        path = f"products/{pid}.jpg"
        (out / path).write_bytes(_encode(_draw_product(cat, rnd), "jpg", 88))
        rows.append({"product_id": pid, "title": title, "category": cat,
                     "url": f"https://shop.example/{cat}/{_slug(title)}-{pid}", "path": path})
        if progress:
            progress("products", i + 1, n)
    with open(out / "products.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["product_id", "title", "category", "url", "path"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return rows


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


def _write_events(out: Path, rng: np.random.Generator, rows: list[AdRow], articles: list[dict],
                  n_requests: int) -> dict[str, int]:
    """request -> (92 %) impression -> click; CTR per creative x3 when topics match."""
    ads = [r for r in rows if r.kind != "invalid"]
    groups = sorted({r.group for r in ads})
    base_ctr = dict(zip(groups, rng.beta(2.0, 70.0, size=len(groups))))  # variants share their creative's CTR
    start = datetime(*map(int, DAYS[0].split("-")), tzinfo=timezone.utc)
    secs = np.sort(rng.integers(0, len(DAYS) * 86400 - 120, size=n_requests))
    art_idx = rng.integers(0, len(articles), size=n_requests)
    # Ads are eligible from their manifest day on; precompute pools per (topic, day).
    pools: dict[tuple[str | None, int], list[AdRow]] = {}
    for day in range(len(DAYS)):
        live = [r for r in ads if r.day <= day]
        pools[(None, day)] = live
        for topic in TOPICS:
            pools[(topic, day)] = [r for r in live if r.advertiser.topic == topic] or live

    def iso(s: float) -> str:
        return (start + timedelta(seconds=int(s))).strftime("%Y-%m-%dT%H:%M:%SZ")

    counts = {"requests": 0, "impressions": 0, "clicks": 0}
    ev = 0
    with open(out / "events.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["event_id", "ts", "request_id", "article_id", "ad_id", "event"])

        def emit(ts, rid, aid, ad_id, kind):
            nonlocal ev
            ev += 1
            w.writerow([f"ev{ev:07d}", iso(ts), rid, aid, ad_id, kind])
            counts[kind + "s"] += 1

        for i in range(n_requests):
            art = articles[art_idx[i]]
            day = int(secs[i] // 86400)
            rid = f"rq{i + 1:06d}"
            emit(secs[i], rid, art["article_id"], "", "request")
            if rng.random() >= 0.92:
                continue  # unfilled request
            # Half the traffic is contextually targeted, the rest is run-of-network.
            eligible = pools[(art["topic"] if rng.random() < 0.5 else None, day)]
            ad = eligible[int(rng.integers(0, len(eligible)))]
            t_imp = secs[i] + int(rng.integers(0, 3))
            emit(t_imp, rid, art["article_id"], ad.ad_id, "impression")
            p = base_ctr[ad.group] * (3.0 if ad.advertiser.topic == art["topic"] else 1.0)
            if rng.random() < min(p, 0.9):
                emit(t_imp + int(rng.integers(1, 60)), rid, art["article_id"], ad.ad_id, "click")
    return counts


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

_MANAGED = ("ads", "products", "ads.csv", "duplicates.json", "articles.jsonl", "products.csv", "events.csv")


def _prepare_out(out: Path) -> None:
    """Create OUT; clear a previous sample there, but never clobber unrelated files."""
    if out.exists() and any(out.iterdir()):
        if not (out / "ads.csv").exists():
            raise FileExistsError(f"{out} is not empty and does not look like an adlens sample")
        for name in _MANAGED:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    (out / "ads").mkdir(parents=True, exist_ok=True)
    (out / "products").mkdir(exist_ok=True)


def make_sample(out_dir: Path | str, n_ads: int = 240, seed: int = 0, progress: Progress = None) -> dict:
    """Write a deterministic synthetic ad corpus to ``out_dir`` and return a summary.

    ``n_ads`` is the number of distinct creatives (originals); ads.csv also holds
    their variants and 4 invalid files. ``progress(step, done, total)`` is called
    while writing if given. Same ``seed`` -> byte-identical files.

    >>> s = make_sample("/tmp/adlens-demo", n_ads=30)    # doctest: +SKIP
    >>> s["counts"]["invalid"]    # doctest: +SKIP
    4
    """
    if n_ads < 1:
        raise ValueError("n_ads must be >= 1")
    out = Path(out_dir)
    _prepare_out(out)
    # Independent streams per stage, so changing one stage never shifts another.
    rnd_plan = random.Random(f"adlens-sample-{seed}-plan")
    advertisers = _make_advertisers(rnd_plan)
    rows = _plan_ads(rnd_plan, advertisers, n_ads)

    # Shuffle before numbering so ids and file names reveal nothing about groups.
    rnd_plan.shuffle(rows)
    for i, r in enumerate(rows):
        r.ad_id = f"ad{i + 1:05d}"
    stats = {"replanned_for_distinctness": 0, "redrawn_variants": 0}
    invalid = _write_ads(out, rows, random.Random(f"adlens-sample-{seed}-variants"), progress, stats)
    _write_manifest(out, rows)
    dup = _duplicates(rows, invalid)
    (out / "duplicates.json").write_text(json.dumps(dup, indent=1) + "\n", encoding="utf-8")

    if progress:
        progress("articles", 0, 1)
    articles = _write_articles(out, random.Random(f"adlens-sample-{seed}-articles"), rows, max(100, n_ads // 2))
    if progress:
        progress("articles", 1, 1)
    products = _write_products(out, random.Random(f"adlens-sample-{seed}-products"), max(100, n_ads // 2),
                               progress)
    if progress:
        progress("events", 0, 1)
    events = _write_events(out, np.random.default_rng([seed, 7]), rows, articles, max(2000, 20 * n_ads))
    if progress:
        progress("events", 1, 1)

    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    return {
        "out_dir": str(out),
        "seed": seed,
        "counts": {
            "creatives": n_ads,
            "ads": len(rows),
            "variants": len(rows) - n_ads - len(invalid),
            "invalid": len(invalid),
            "by_kind": dict(sorted(kinds.items())),
            "duplicate_groups": len(dup["groups"]),
            "advertisers": len(advertisers),
            "topics": len(TOPICS),
            "articles": len(articles),
            "products": len(products),
            **events,
            **stats,
        },
        "paths": {
            "ads_dir": str(out / "ads"),
            "ads_csv": str(out / "ads.csv"),
            "duplicates_json": str(out / "duplicates.json"),
            "articles_jsonl": str(out / "articles.jsonl"),
            "products_dir": str(out / "products"),
            "products_csv": str(out / "products.csv"),
            "events_csv": str(out / "events.csv"),
        },
    }
