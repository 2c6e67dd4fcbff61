"""Teacher -> student quality scorer (seed 000 Steps 5, 7, 8 and training; issue 5).

Modules (import them directly; nothing heavy is imported here):

* :mod:`adlens.quality.pairs`    -- ``make_pairs`` (positive / random_negative / safe_contrast)
* :mod:`adlens.quality.teachers` -- ``RubricTeacher``, ``LabelsTeacher``, ``OpenAITeacher``
* :mod:`adlens.quality.dataset`  -- ``build_dataset`` (batched Parquet + dataset card)
* :mod:`adlens.quality.student`  -- ``QualityStudent``, ``train_quality``, ``group_split``
* :mod:`adlens.quality.registry` -- ``ModelRegistry`` (versioned model + schema + metrics + card)
* :mod:`adlens.quality.fast`     -- ``FastScorer`` (20 candidates in ~100 µs)
* :mod:`adlens.quality.plots`    -- ``calibration_svg`` (inline SVG reliability diagram)
* :mod:`adlens.quality.jobs`     -- workspace jobs behind ``adlens pairs / teach / train / evaluate quality
  / score`` and the ``quality`` stage of ``adlens run`` (+ ``write_evaluation_report``)
"""
