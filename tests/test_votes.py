"""morphology.votes: the one reader of Galaxy Zoo vote columns and its one broken-row rule."""

import numpy as np
import pytest

from galaxalign.morphology.answers import answer_fractions, answers_from_votes
from galaxalign.morphology.votes import (
    ANSWER_COLUMNS,
    MIN_ANSWERED,
    ODD_COLUMNS,
    ODD_FEATURES,
    VOTE_COLUMNS,
    answered,
    gz2_summary_label,
    vote_fractions,
)


def test_odd_columns_read_from_hart16_and_kaggle():
    hart = {"t06_odd_a14_yes_debiased": [0.7], "t06_odd_a15_no_debiased": [0.3]}
    hart |= {f"{ODD_COLUMNS[k][2]}_debiased": [0.0] for k in ODD_FEATURES}
    hart["t08_odd_feature_a24_merger_debiased"] = [0.8]
    got = vote_fractions(hart, columns=ODD_COLUMNS)
    assert got is not None and got["odd_yes"][0] == 0.7 and got["merger"][0] == 0.8 and got["ring"][0] == 0.0
    kaggle = {"Class6.1": [0.2], "Class6.2": [0.6]} | {str(ODD_COLUMNS[k][3]): [0.0] for k in ODD_FEATURES}
    kaggle["Class8.6"] = [0.15]
    kaggle["Class8.1"] = [0.05]
    got = vote_fractions(kaggle, columns=ODD_COLUMNS)  # Kaggle shares are of everyone: renormalised per question
    assert got is not None
    assert got["odd_yes"][0] == pytest.approx(0.25) and got["merger"][0] == pytest.approx(0.75)
    assert got["ring"][0] == pytest.approx(0.25)
    assert vote_fractions({"smooth-or-featured_smooth_fraction": [1.0]}, columns=ODD_COLUMNS) is None


def test_one_reader_serves_the_summary_and_the_answers():
    table = {
        "smooth-or-featured-dr5_smooth_fraction": [0.2],
        "smooth-or-featured-dr5_featured-or-disk_fraction": [0.8],
        "bar-dr5_strong_fraction": [0.5],
        "bar-dr5_weak_fraction": [0.25],
        "bar-dr5_no_fraction": [0.25],
        "merging-dr5_merger_fraction": [0.1],
    }
    summary = vote_fractions(table)
    both = answer_fractions(table)
    assert summary is not None and both is not None
    assert set(summary) <= set(VOTE_COLUMNS) and set(both) - set(summary) <= set(ANSWER_COLUMNS)
    assert summary["bar_yes"][0] == pytest.approx(0.75)  # strong + weak, summed by the reader
    assert both["bar_strong"][0] == 0.5 and both["merging_merger"][0] == 0.1
    assert all(np.array_equal(summary[k], both[k]) for k in summary)


def test_answered_is_the_one_threshold():
    shares = np.array([[0.0, 0.3, np.nan], [0.03, 0.3, np.nan]])  # two answers, three galaxies
    assert answered(shares).tolist() == [False, True, False]
    assert MIN_ANSWERED == 0.5


def test_a_broken_row_decides_neither_the_summary_nor_the_answers():
    row = {
        "smooth-or-featured_smooth_fraction": 0.02,
        "smooth-or-featured_featured-or-disk_fraction": 0.01,
        "smooth-or-featured_artifact_fraction": 0.0,
        "how-rounded_round_fraction": 0.9,
        "how-rounded_in-between_fraction": 0.1,
        "how-rounded_cigar-shaped_fraction": 0.0,
    }
    assert gz2_summary_label(row) == -1
    assert gz2_summary_label({**row, "smooth-or-featured_smooth_fraction": 0.9}) == 0  # smooth_round
    fractions = answer_fractions({k: [v] for k, v in row.items()})
    assert fractions is not None
    assert answers_from_votes(fractions)[0].smooth_or_featured_conf == 0.0
