"""Teachers (seed 000, Step 7): label ad x article pairs with a 1-10 score + reasoning.

One interface, :class:`Teacher`: ``label(pairs) -> list[dict]`` where every output row is::

    {"pair_id", "ad_id", "article_id", "score": float 1-10 or None, "reasoning": str,
     "teacher": teacher id, "cost": USD float, "error": None or a short reason, "cached": bool}

A row with ``score=None`` carries an ``error`` (bad answer, no label, budget stop...): teachers report
failures, they never raise on one bad pair. Implementations:

* :class:`RubricTeacher` -- a documented heuristic over the features, for a cold start without an
  LLM or labels; teacher id ``rubric/<version>`` in every row.
* :class:`LabelsTeacher` -- human ratings or click logs (a table, or CSV / Parquet via
  :meth:`LabelsTeacher.from_file`) with a column mapping, rescaled to 1-10; clicks -> CTR -> 1-10.
* :class:`OpenAITeacher` -- any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, vLLM,
  Ollama, llama.cpp server): ad image as a base64 image part, versioned prompt with the seed's four
  criteria, strict JSON ``{"score": 1-10, "reasoning": "..."}``, SQLite answer cache keyed by
  (pair, model, prompt version) so a rerun resumes, bounded concurrency, retries with exponential
  backoff on 429 / 5xx / timeouts / connection errors, a timeout (default 120 s, the seed's), a spend
  budget checked *before* each call, and a cost report (:meth:`OpenAITeacher.report`).
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import json
import math
import os
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from adlens.quality.pairs import as_records, pair_id as make_pair_id

__all__ = ["Teacher", "RubricTeacher", "LabelsTeacher", "OpenAITeacher", "PROMPT_VERSION", "build_prompt",
           "parse_answer", "label_summary"]


class Teacher(Protocol):
    teacher_id: str

    def label(self, pairs: Any) -> list[dict[str, Any]]: ...


def _row(p: Mapping[str, Any], teacher: str, score: float | None, reasoning: str = "", cost: float = 0.0,
         error: str | None = None, cached: bool = False) -> dict[str, Any]:
    pid = p.get("pair_id") or make_pair_id(p.get("ad_id"), p.get("article_id"))
    return {"pair_id": pid, "ad_id": p.get("ad_id"), "article_id": p.get("article_id"), "score": score,
            "reasoning": reasoning, "teacher": teacher, "cost": float(cost), "error": error, "cached": cached}


def label_summary(labels: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts, score histogram (1..10 buckets), mean, errors, total cost -- used by the dataset card."""
    scores = [r["score"] for r in labels if r.get("score") is not None]
    hist = Counter(min(10, max(1, int(round(s)))) for s in scores)
    return {"n": len(labels), "n_scored": len(scores), "n_errors": len(labels) - len(scores),
            "errors": dict(Counter(r.get("error") for r in labels if r.get("score") is None)),
            "mean": (sum(scores) / len(scores)) if scores else None,
            "histogram": {str(k): hist.get(k, 0) for k in range(1, 11)},
            "teachers": dict(Counter(r.get("teacher") for r in labels)),
            "total_cost": float(sum(r.get("cost") or 0.0 for r in labels))}


# =========================================================================== rubric

def _num(v: Any) -> float | None:
    if v is None or isinstance(v, str):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _clip01(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


class RubricTeacher:
    """Cold-start heuristic: a weighted mean of the seed's four criteria, each in [0, 1] from features.

    ==========================  ======  =====================================================================
    criterion                   weight  from (missing inputs are skipped, weights renormalised)
    ==========================  ======  =====================================================================
    contextual relevance        0.40    mean of sim_adtext_article, sim_adimage_article (cosines mapped
                                        ``(c+1)/2``... clipped), topic_match, entity_overlap_rate
    message clarity (< 2 s)     0.20    clarity / 8 (log-Laplacian variance), 1 - ocr_text_area_share,
                                        1 - clutter * 4
    emotional engagement        0.20    sentiment_alignment; face_emotion smiling=1 / neutral=0.6 / none=0.4
    memorability & originality  0.20    colourfulness / 100, is_ad, twist_present
    ==========================  ======  =====================================================================

    ``score = 1 + 9 * weighted mean`` (a pair with no usable feature gets 5.5 and says so). Every row
    is marked ``teacher = "rubric/<version>"`` and its reasoning lists the criterion values.
    """

    version = "1"
    WEIGHTS = {"relevance": 0.4, "clarity": 0.2, "engagement": 0.2, "memorability": 0.2}

    def __init__(self) -> None:
        self.teacher_id = f"rubric/{self.version}"

    @staticmethod
    def criteria(f: Mapping[str, Any]) -> dict[str, float | None]:
        def mean(xs):
            xs = [x for x in xs if x is not None]
            return sum(xs) / len(xs) if xs else None

        sim = [_num(f.get("sim_adtext_article")), _num(f.get("sim_adimage_article"))]
        rel = [None if s is None else _clip01(s) for s in sim]
        rel += [_num(f.get("topic_match")), _num(f.get("entity_overlap_rate"))]
        cl = _num(f.get("clarity"))
        ocr = _num(f.get("ocr_text_area_share"))
        clut = _num(f.get("clutter"))
        clar = [None if cl is None else _clip01(cl / 8.0), None if ocr is None else _clip01(1 - ocr),
                None if clut is None else _clip01(1 - 4 * clut)]
        emo = {"smiling": 1.0, "neutral": 0.6, "none": 0.4}.get(str(f.get("face_emotion")))
        eng = [_num(f.get("sentiment_alignment")), emo]
        col = _num(f.get("colourfulness"))
        mem = [None if col is None else _clip01(col / 100.0), _num(f.get("is_ad")), _num(f.get("twist_present"))]
        return {"relevance": mean(rel), "clarity": mean(clar), "engagement": mean(eng), "memorability": mean(mem)}

    def label(self, pairs: Any) -> list[dict[str, Any]]:
        """``pairs``: records carrying the feature columns (pair + creative features merged)."""
        out = []
        for p in as_records(pairs):
            c = self.criteria(p)
            used = {k: v for k, v in c.items() if v is not None}
            if used:
                w = sum(self.WEIGHTS[k] for k in used)
                s = sum(self.WEIGHTS[k] * v for k, v in used.items()) / w
                reason = "rubric: " + ", ".join(f"{k}={v:.2f}" for k, v in used.items())
            else:
                s, reason = 0.5, "rubric: no usable features, neutral score"
            out.append(_row(p, self.teacher_id, round(1 + 9 * s, 4), reason))
        return out


# =========================================================================== labels

class LabelsTeacher:
    """Human ratings or click logs as the teacher.

    Args:
        table: the labels (records / column dict / DataFrame / Arrow table).
        columns: mapping of roles to column names; roles: ``ad_id`` (required), ``article_id``
            (optional: without it a label applies to every pair of the ad), and either ``score`` or
            ``clicks`` + ``impressions``.
        scale: ``(lo, hi)`` of the rating scale, mapped linearly onto 1-10 (default: the observed
            min / max). For clicks, CTR is smoothed ``(clicks + prior*m) / (impressions + m)`` and
            mapped from ``[0, ctr_max]`` (default: observed max) onto 1-10.
        agg: several ratings for one key are averaged (ratings) or summed (clicks / impressions).
        teacher_id: recorded in every row (default ``labels/<kind>``).
    """

    def __init__(self, table: Any, columns: Mapping[str, str] | None = None, scale: tuple[float, float] | None = None,
                 ctr_prior: float = 0.0, ctr_prior_weight: float = 0.0, ctr_max: float | None = None,
                 min_impressions: int = 1, teacher_id: str | None = None):
        cols = {"ad_id": "ad_id", "article_id": "article_id", "score": "score", "clicks": "clicks",
                "impressions": "impressions", **(columns or {})}
        recs = as_records(table)
        keys0 = recs[0].keys() if recs else ()
        self.by_article = cols["article_id"] in keys0
        self.kind = "clicks" if (cols["clicks"] in keys0 and cols["impressions"] in keys0 and
                                 (columns is None or "score" not in columns)) else "ratings"
        self.teacher_id = teacher_id or f"labels/{self.kind}"
        acc: dict[Any, list[float]] = {}
        for r in recs:
            key = (str(r[cols["ad_id"]]), str(r[cols["article_id"]])) if self.by_article else str(r[cols["ad_id"]])
            if self.kind == "ratings":
                v = _num(r.get(cols["score"]))
                if v is not None:
                    acc.setdefault(key, []).append(v)
            else:
                c, n = _num(r.get(cols["clicks"])) or 0.0, _num(r.get(cols["impressions"])) or 0.0
                a = acc.setdefault(key, [0.0, 0.0])
                a[0] += c
                a[1] += n
        if self.kind == "ratings":
            raw = {k: sum(v) / len(v) for k, v in acc.items()}
            self.n_obs = {k: len(v) for k, v in acc.items()}
            lo, hi = scale if scale else (min(raw.values(), default=0.0), max(raw.values(), default=1.0))
        else:
            raw = {k: (c + ctr_prior * ctr_prior_weight) / (n + ctr_prior_weight)
                   for k, (c, n) in acc.items() if n >= min_impressions and n + ctr_prior_weight > 0}
            self.n_obs = {k: int(acc[k][1]) for k in raw}
            lo, hi = 0.0, (ctr_max if ctr_max is not None else max(raw.values(), default=1.0))
        self.scale = (float(lo), float(hi))
        span = (hi - lo) or 1.0
        self.scores = {k: 1 + 9 * _clip01((v - lo) / span) for k, v in raw.items()}
        self.raw = raw

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs: Any) -> LabelsTeacher:
        """Read a CSV or Parquet file (pyarrow) and build the teacher."""
        p = str(path)
        if p.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq
            table = pq.read_table(p)
        else:
            import pyarrow.csv as pcsv
            table = pcsv.read_csv(p)
        return cls(table, **kwargs)

    def label(self, pairs: Any) -> list[dict[str, Any]]:
        out = []
        for p in as_records(pairs):
            key = (str(p.get("ad_id")), str(p.get("article_id"))) if self.by_article else str(p.get("ad_id"))
            s = self.scores.get(key)
            if s is None:
                out.append(_row(p, self.teacher_id, None, "", error="no label"))
            else:
                what = "CTR" if self.kind == "clicks" else "rating"
                out.append(_row(p, self.teacher_id, round(s, 4),
                                f"{what}={self.raw[key]:.6g} (n={self.n_obs[key]}) scaled from {self.scale} to 1-10"))
        return out


# =========================================================================== openai-compatible

PROMPT_VERSION = "quality-v1"

_SYSTEM = ("You are an expert advertising creative director. You rate how well a display ad works when "
           "shown next to a given article. Answer with strict JSON only.")

_CRITERIA = """Rate the ad (image + copy) shown next to the article on a 1-10 scale, considering:
1. Memorability and originality of the ad.
2. Message clarity: is the message understood in under 2 seconds?
3. Emotional engagement.
4. Contextual relevance: does the ad fit this article and its tone (and would it be safe next to it)?
Return ONLY a JSON object: {"score": <integer 1-10>, "reasoning": "<one or two sentences>"}"""


def build_prompt(pair: Mapping[str, Any], image_bytes: bytes | None, image_mime: str = "image/png",
                 max_article_chars: int = 4000) -> list[dict[str, Any]]:
    """The chat messages for one pair (prompt version :data:`PROMPT_VERSION`)."""
    ad_text = pair.get("ad_text") or pair.get("ad_copy") or pair.get("copy_text") or ""
    art = pair.get("article_text") or " ".join(str(pair.get(k) or "") for k in ("article_title", "article_body")).strip()
    text = (f"{_CRITERIA}\n\nAD COPY:\n{ad_text or '(none)'}\n\nARTICLE:\n{art[:max_article_chars] or '(none)'}")
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if image_bytes:
        b64 = base64.b64encode(image_bytes).decode()
        content.append({"type": "image_url", "image_url": {"url": f"data:{image_mime};base64,{b64}"}})
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": content}]


def parse_answer(content: str) -> tuple[float, str]:
    """Validate the model's answer: strict JSON object with ``score`` (number in [1, 10]) and
    ``reasoning`` (string). Tolerates a surrounding Markdown code fence only. Raises ``ValueError``."""
    s = content.strip()
    m = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", s, flags=re.S)
    if m:
        s = m.group(1)
    obj = json.loads(s)
    if not isinstance(obj, dict):
        raise ValueError("answer is not a JSON object")
    score, reasoning = obj.get("score"), obj.get("reasoning")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not (1 <= score <= 10):
        raise ValueError(f"score must be a number in [1, 10], got {score!r}")
    if not isinstance(reasoning, str):
        raise ValueError("reasoning must be a string")
    return float(score), reasoning


class _Retryable(Exception):
    pass


class AnswerCache:
    """SQLite cache of successful answers, keyed by (pair_id, model, prompt_version). Thread-safe."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (pair_id TEXT, model TEXT, prompt_version TEXT, "
                         "score REAL, reasoning TEXT, cost REAL, prompt_tokens INTEGER, completion_tokens INTEGER, "
                         "created REAL, PRIMARY KEY (pair_id, model, prompt_version))")

    def get(self, pair_id: str, model: str, prompt_version: str) -> tuple | None:
        with self._lock:
            return self._db.execute("SELECT score, reasoning, cost FROM answers WHERE pair_id=? AND model=? AND "
                                    "prompt_version=?", (pair_id, model, prompt_version)).fetchone()

    def put(self, pair_id: str, model: str, prompt_version: str, score: float, reasoning: str, cost: float,
            usage: Mapping[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?,?,?,?,?,?,?,?,?)",
                             (pair_id, model, prompt_version, score, reasoning, cost, usage.get("prompt_tokens"),
                              usage.get("completion_tokens"), time.time()))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class OpenAITeacher:
    """LLM teacher over an OpenAI-compatible chat-completions API.

    Args:
        base_url: e.g. ``https://api.openai.com/v1`` or ``http://localhost:8000/v1`` (``/chat/completions``
            is appended).
        model: model name sent to the API (part of the cache key).
        api_key: bearer token (default ``$OPENAI_API_KEY``; none for local servers).
        cache_path: SQLite answer cache (resume after a crash: cached pairs make no call).
        image_loader: ``pair -> (bytes, mime) | bytes | None``; default reads ``pair["image_bytes"]`` or
            the file at ``pair["image_path"]``.
        max_workers: concurrent requests.
        timeout: per-request timeout in seconds (seed: 120).
        max_retries: retries after the first attempt on 429 / 5xx / timeouts / connection errors,
            sleeping ``backoff * 2**attempt`` (or ``Retry-After`` when given, capped at ``max_backoff``).
        price_in_per_mtok / price_out_per_mtok: USD per million prompt / completion tokens.
        budget_usd: stop before a call could push the spend over it. A call is only started if
            ``spent + in-flight reservations + estimate <= budget`` where the estimate is the larger of
            ``est_cost_per_call`` (default: max_tokens completion + 1500 prompt tokens at the given prices)
            and the most expensive call seen so far.
        prompt_version: part of the cache key; bump when the prompt changes.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, cache_path: str | os.PathLike | None = None,
                 image_loader: Callable[[Mapping[str, Any]], Any] | None = None, max_workers: int = 4,
                 timeout: float = 120.0, max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 60.0,
                 price_in_per_mtok: float = 0.0, price_out_per_mtok: float = 0.0, budget_usd: float | None = None,
                 est_cost_per_call: float | None = None, max_tokens: int = 300, temperature: float = 0.0,
                 prompt_version: str = PROMPT_VERSION, json_mode: bool = True, client: Any = None):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.cache = AnswerCache(cache_path) if cache_path else None
        self.image_loader = image_loader or self._default_image
        self.max_workers = max(1, int(max_workers))
        self.timeout, self.max_retries, self.backoff, self.max_backoff = timeout, max_retries, backoff, max_backoff
        self.price_in, self.price_out = price_in_per_mtok, price_out_per_mtok
        self.budget = budget_usd
        self.est_cost = est_cost_per_call if est_cost_per_call is not None else (
            (1500 * price_in_per_mtok + max_tokens * price_out_per_mtok) / 1e6)
        self.max_tokens, self.temperature, self.json_mode = max_tokens, temperature, json_mode
        self.prompt_version = prompt_version
        self.teacher_id = f"openai/{model}/{prompt_version}"
        self._client = client
        self._stats: Counter = Counter()
        self._spent = 0.0
        self._max_seen = 0.0
        self.stopped_by_budget = False

    # ---- plumbing
    @staticmethod
    def _default_image(p: Mapping[str, Any]):
        if p.get("image_bytes"):
            return p["image_bytes"]
        path = p.get("image_path")
        if path and Path(path).exists():
            return Path(path).read_bytes()
        return None

    def _http(self):
        if self._client is None:
            import httpx
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.Client(timeout=self.timeout, headers=headers,
                                        limits=httpx.Limits(max_connections=self.max_workers))
        return self._client

    def cost_of(self, usage: Mapping[str, Any]) -> float:
        return ((usage.get("prompt_tokens") or 0) * self.price_in + (usage.get("completion_tokens") or 0) * self.price_out) / 1e6

    def _request(self, pair: Mapping[str, Any]) -> dict[str, Any]:
        """One pair, with retries. Returns {score, reasoning, usage, cost, error, attempts}; never raises."""
        import httpx

        img = self.image_loader(pair)
        mime = "image/png"
        if isinstance(img, tuple):
            img, mime = img
        elif img and img[:3] == b"\xff\xd8\xff":
            mime = "image/jpeg"
        body = {"model": self.model, "messages": build_prompt(pair, img, mime), "temperature": self.temperature,
                "max_tokens": self.max_tokens}
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        url = f"{self.base_url}/chat/completions"
        last = "unknown"
        for attempt in range(self.max_retries + 1):
            wait = min(self.max_backoff, self.backoff * (2 ** attempt))
            try:
                r = self._http().post(url, json=body, timeout=self.timeout)
                if r.status_code == 429 or r.status_code >= 500:
                    last = f"http {r.status_code}"
                    ra = r.headers.get("retry-after")
                    if ra:
                        try:
                            wait = min(self.max_backoff, float(ra))
                        except ValueError:
                            pass
                    raise _Retryable(last)
                if r.status_code >= 400:
                    return {"error": f"http {r.status_code}: {r.text[:200]}", "attempts": attempt + 1}
                data = r.json()
                usage = data.get("usage") or {}
                cost = self.cost_of(usage)
                try:
                    content = data["choices"][0]["message"]["content"]
                    score, reasoning = parse_answer(content)
                except (KeyError, IndexError, TypeError, ValueError) as e:
                    return {"error": f"bad answer: {str(e)[:200]}", "usage": usage, "cost": cost, "attempts": attempt + 1}
                return {"score": score, "reasoning": reasoning, "usage": usage, "cost": cost, "error": None,
                        "attempts": attempt + 1}
            except (_Retryable, httpx.TimeoutException, httpx.TransportError) as e:
                if not isinstance(e, _Retryable):
                    last = "timeout" if isinstance(e, httpx.TimeoutException) else f"transport: {type(e).__name__}"
                self._stats["retries" if attempt < self.max_retries else "gave_up"] += 1
                if attempt < self.max_retries:
                    time.sleep(wait)
            except ValueError as e:  # response body not JSON
                return {"error": f"bad response: {str(e)[:200]}", "attempts": attempt + 1}
        return {"error": f"failed after {self.max_retries + 1} attempts: {last}", "attempts": self.max_retries + 1}

    # ---- the run
    def label(self, pairs: Any, progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        """Label ``pairs`` (cache first, then the API); ``progress(done, total)`` after each answer."""
        recs = as_records(pairs)
        out: list[dict[str, Any] | None] = [None] * len(recs)
        todo: list[int] = []
        for i, p in enumerate(recs):
            pid = p.get("pair_id") or make_pair_id(p.get("ad_id"), p.get("article_id"))
            hit = self.cache.get(pid, self.model, self.prompt_version) if self.cache else None
            if hit is not None:
                self._stats["cached"] += 1
                out[i] = _row(p, self.teacher_id, hit[0], hit[1], 0.0, cached=True)  # cost already paid
            else:
                todo.append(i)
        done_n = len(recs) - len(todo)
        if progress:
            progress(done_n, len(recs))
        reserved: dict[cf.Future, float] = {}
        pending = list(reversed(todo))
        with cf.ThreadPoolExecutor(max_workers=self.max_workers) as ex:
            futs: dict[cf.Future, int] = {}
            while pending or futs:
                while pending and len(futs) < self.max_workers and not self.stopped_by_budget:
                    est = max(self.est_cost, self._max_seen)
                    if self.budget is not None and self._spent + sum(reserved.values()) + est > self.budget + 1e-12:
                        self.stopped_by_budget = True
                        break
                    i = pending.pop()
                    f = ex.submit(self._request, recs[i])
                    futs[f] = i
                    reserved[f] = est
                if not futs:
                    break
                done, _ = cf.wait(futs, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    i = futs.pop(f)
                    reserved.pop(f, None)
                    res = f.result()
                    self._record(recs[i], res, out, i)
                    done_n += 1
                    if progress:
                        progress(done_n, len(recs))
        for i in pending:  # not started: budget
            self._stats["skipped_budget"] += 1
            out[i] = _row(recs[i], self.teacher_id, None, "", error="budget exhausted")
        return out  # type: ignore[return-value]

    def _record(self, p, res, out, i) -> None:
        cost = float(res.get("cost") or 0.0)
        self._spent += cost
        self._max_seen = max(self._max_seen, cost)
        usage = res.get("usage") or {}
        self._stats["calls"] += res.get("attempts", 1)
        self._stats["prompt_tokens"] += usage.get("prompt_tokens") or 0
        self._stats["completion_tokens"] += usage.get("completion_tokens") or 0
        if res.get("error"):
            self._stats["failed"] += 1
            out[i] = _row(p, self.teacher_id, None, "", cost, error=res["error"])
            return
        self._stats["ok"] += 1
        pid = p.get("pair_id") or make_pair_id(p.get("ad_id"), p.get("article_id"))
        if self.cache:
            self.cache.put(pid, self.model, self.prompt_version, res["score"], res["reasoning"], cost, usage)
        out[i] = _row(p, self.teacher_id, res["score"], res["reasoning"], cost)

    def report(self) -> dict[str, Any]:
        """Cost report of this teacher object's runs."""
        s = self._stats
        return {"teacher": self.teacher_id, "model": self.model, "prompt_version": self.prompt_version,
                "http_attempts": s["calls"], "ok": s["ok"], "failed": s["failed"], "cached": s["cached"],
                "retries": s["retries"], "skipped_budget": s["skipped_budget"],
                "prompt_tokens": s["prompt_tokens"], "completion_tokens": s["completion_tokens"],
                "spent_usd": round(self._spent, 6), "budget_usd": self.budget, "stopped_by_budget": self.stopped_by_budget,
                "price_in_per_mtok": self.price_in, "price_out_per_mtok": self.price_out}

    def close(self) -> None:
        if self._client is not None and hasattr(self._client, "close"):
            self._client.close()
        if self.cache:
            self.cache.close()
