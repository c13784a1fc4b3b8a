"""Similarity search over a catalogue embedded by a run: build, store, load and query indexes."""

from galaxalign.search.index import KINDS, GalaxyIndex, Hit, build_index
from galaxalign.search.query import Searcher, sketch_to_symbol

load_index = GalaxyIndex.load

__all__ = ["KINDS", "GalaxyIndex", "Hit", "Searcher", "build_index", "load_index", "sketch_to_symbol"]
