"""Readers for `data.source`: built-in datasets, tables, image folders and .npz arrays.

Each returns a `RawData`; none of them splits or fits anything (that is `stages.prepare.stage`).
"""
