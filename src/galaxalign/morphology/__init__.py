"""Galaxy Zoo morphology: the volunteers' answers and vote fractions, and a galaxy's own answers.

One home for what symbols, data and the studies all read: `votes` turns catalogue vote columns into
canonical answer fractions, `answers` turns them (or Galaxy10-Sim's parameters) into a galaxy's
answers and caption.
"""

from galaxalign.morphology.answers import GalaxyAnswers, caption, dataset_answers
from galaxalign.morphology.votes import VOTE_NAMES, gz2_summary_keys, gz2_summary_label, vote_fractions

__all__ = [
    "VOTE_NAMES",
    "GalaxyAnswers",
    "caption",
    "dataset_answers",
    "gz2_summary_keys",
    "gz2_summary_label",
    "vote_fractions",
]
