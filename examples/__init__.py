"""Runnable examples: the seed article's three models, the keras-graft way.

Each module exposes `build_model()` and `main()`; run one with
`python examples/<name>.py` or all of them with `keras-graft demo`.
"""
