"""Features of creatives (M), articles (context) and (creative, article) pairs (F) -- seed 000 Steps 3, 4, 6.

Library only: images/strings/arrays in, flat dicts and arrays out, each column declared in a
versioned schema (:mod:`adlens.features.schema`). Importing this package is cheap; models
(OCR, spaCy, embedders) load on first use.

- :mod:`adlens.features.creative` -- :class:`CreativeFeatures` (faces, clarity, clutter, contrast,
  colourfulness, OCR, copy quality, is-ad, embeddings, optional LLM twist features)
- :mod:`adlens.features.copy` -- copy quality of a text
- :mod:`adlens.features.context` -- :class:`ContextFeatures`, :class:`TopicClassifier`, IAB TSV loader,
  :class:`EntityExtractor`, valence, arousal
- :mod:`adlens.features.pair` -- :func:`pair_features`, the six F features, vectorised
- :mod:`adlens.features.joint` -- :class:`JointSpace`, a LiT-style image-text space
"""

from adlens.features.schema import FEATURE_SCHEMA_VERSION, FeatureSpec, check_row, schema_fingerprint, schema_names

__all__ = [
    "FEATURE_SCHEMA_VERSION",
    "FeatureSpec",
    "check_row",
    "schema_fingerprint",
    "schema_names",
]
