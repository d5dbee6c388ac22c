"""Checklist data and scores, checked against worked examples from the published rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rcm_viewer.cases import (
    CaseStore,
    bcc_score,
    builtin_checklists,
    checklist_from_dict,
    load_checklists,
    melanoma_score,
    naevus_feature_count,
    score_checklist,
)
from rcm_viewer.errors import CaseStoreError

MELANOMA_ITEMS = (
    "non_edged_papillae",
    "atypical_basal_cells",
    "roundish_pagetoid_cells",
    "widespread_pagetoid_infiltration",
    "cerebriform_clusters",
    "nucleated_cells_in_papillae",
)


def all_absent(items: tuple[str, ...]) -> dict[str, str]:
    return dict.fromkeys(items, "absent")


# --------------------------------------------------------------------------- melanoma score


def test_melanoma_both_major_criteria_score_4_and_suggest_melanoma() -> None:
    answers = all_absent(MELANOMA_ITEMS)
    answers.update(non_edged_papillae="present", atypical_basal_cells="present")
    score = melanoma_score(answers)
    assert (score.total, score.max_possible, score.threshold) == (4, 8, 3)
    assert score.threshold_met is True
    assert score.complete and score.n_not_assessable == 0
    assert score.interpretation == "Melanoma score 4 of 8 (threshold 3): suggests melanoma."


def test_melanoma_one_minor_criterion_scores_1_and_does_not_suggest_melanoma() -> None:
    answers = all_absent(MELANOMA_ITEMS)
    answers["roundish_pagetoid_cells"] = "present"
    score = melanoma_score(answers)
    assert score.total == 1
    assert score.threshold_met is False
    assert score.outcome_could_change is False
    assert "does not suggest melanoma" in score.interpretation


def test_melanoma_one_major_plus_one_minor_reaches_the_threshold_exactly() -> None:
    answers = all_absent(MELANOMA_ITEMS)
    answers.update(atypical_basal_cells="present", cerebriform_clusters="present")
    score = melanoma_score(answers)
    assert score.total == 3 and score.threshold_met is True


def test_melanoma_not_assessable_items_count_zero_and_are_reported() -> None:
    answers = all_absent(MELANOMA_ITEMS)
    answers.update(
        non_edged_papillae="not_assessable",
        atypical_basal_cells="not_assessable",
        nucleated_cells_in_papillae="present",
    )
    score = melanoma_score(answers)
    assert score.total == 1
    assert score.threshold_met is False
    assert score.n_not_assessable == 2
    assert score.not_assessable_items == ("non_edged_papillae", "atypical_basal_cells")
    # the two unseen major criteria could have added 4 points: say so
    assert score.outcome_could_change is True
    assert "2 not assessable, which could change the outcome" in score.interpretation


def test_unanswered_items_are_counted_separately_from_not_assessable() -> None:
    score = melanoma_score({"non_edged_papillae": "present", "atypical_basal_cells": None})
    assert score.total == 2
    assert score.n_unanswered == 5 and not score.complete
    assert score.n_not_assessable == 0
    assert "5 unanswered" in score.interpretation


def test_an_answer_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(CaseStoreError, match="not one of"):
        melanoma_score({"non_edged_papillae": "yes"})


# --------------------------------------------------------------------------- BCC, naevus


def test_bcc_score_adds_positive_and_subtracts_negative_features() -> None:
    answers = {
        "polarised_elongated_features": "present",
        "basaloid_nodules": "present",
        "telangiectasia_convoluted_vessels": "absent",
        "epidermal_shadowing": "absent",
        "non_visible_papillae": "present",
        "epidermal_disarrangement": "absent",
        "cerebriform_nests": "absent",
    }
    score = bcc_score(answers)
    assert (score.total, score.max_possible, score.min_possible) == (1, 4, -3)
    assert score.threshold_met is True
    assert "suggests basal cell carcinoma" in score.interpretation

    answers["cerebriform_nests"] = "present"
    score = bcc_score(answers)
    assert score.total == 0 and score.threshold_met is False


def test_bcc_negative_not_assessable_feature_can_flip_a_positive_result() -> None:
    score = bcc_score({"basaloid_nodules": "present", "cerebriform_nests": "not_assessable"})
    assert score.total == 1 and score.threshold_met is True
    assert score.outcome_could_change is True


def test_bcc_rule_is_flagged_for_verification() -> None:
    bcc = builtin_checklists()["bcc_two_step_first"]
    assert "(verify against the original paper)" in bcc.description


def test_naevus_features_are_a_count_without_a_diagnostic_threshold() -> None:
    answers = {
        "regular_epidermis": "present",
        "edged_papillae": "present",
        "typical_basal_cells": "present",
        "junctional_pattern": "not_assessable",
        "regular_junctional_nests": "absent",
    }
    score = naevus_feature_count(answers)
    assert score.total == 3 and score.max_possible == 7
    assert score.threshold is None and score.threshold_met is None
    assert "no validated diagnostic threshold" in score.interpretation
    assert "1 not assessable and 2 unanswered" in score.interpretation


# --------------------------------------------------------------------------- checklists as data


def test_builtin_checklists_survive_a_json_round_trip() -> None:
    for checklist in builtin_checklists().values():
        text = json.dumps(checklist.to_dict())
        again = checklist_from_dict(json.loads(text))
        assert again == checklist
        assert all(item.definition for item in checklist.items), checklist.id


def test_melanoma_checklist_data_matches_pellacani_2005() -> None:
    melanoma = builtin_checklists()["melanoma_score"]
    points = {item.id: (item.points, item.group) for item in melanoma.items}
    assert points == {
        "non_edged_papillae": (2, "major"),
        "atypical_basal_cells": (2, "major"),
        "roundish_pagetoid_cells": (1, "minor"),
        "widespread_pagetoid_infiltration": (1, "minor"),
        "cerebriform_clusters": (1, "minor"),
        "nucleated_cells_in_papillae": (1, "minor"),
    }
    assert melanoma.groups == ("major", "minor")
    assert "97.3%" in melanoma.scoring.performance and "72.3%" in melanoma.scoring.performance


NORI_2004 = {
    "id": "bcc_nori_2004",
    "title": "BCC criteria (Nori 2004)",
    "description": "Four or more of five criteria suggest BCC (verify).",
    "reference": "Nori S et al. 2004 (verify)",
    "items": [
        {"id": f"criterion_{n}", "label": f"Criterion {n}", "points": 1, "group": "criteria"}
        for n in range(1, 6)
    ],
    "scoring": {"score_label": "Nori criteria", "threshold": 4, "met": "suggests BCC"},
}


def test_a_clinic_adds_a_checklist_with_a_json_file(tmp_path: Path) -> None:
    folder = tmp_path / "checklists"
    folder.mkdir()
    (folder / "nori.json").write_text(json.dumps(NORI_2004), encoding="utf-8")
    checklists = load_checklists([folder])
    assert list(checklists)[-1] == "bcc_nori_2004"
    nori = checklists["bcc_nori_2004"]
    assert nori.source.endswith("nori.json")
    answers = {f"criterion_{n}": "present" for n in range(1, 5)} | {"criterion_5": "absent"}
    assert score_checklist(nori, answers).interpretation == (
        "Nori criteria 4 of 5 (threshold 4): suggests BCC."
    )


def test_a_clinic_file_with_a_builtin_id_corrects_the_builtin(tmp_path: Path) -> None:
    corrected = builtin_checklists()["bcc_two_step_first"].to_dict()
    corrected["scoring"]["threshold"] = 2
    (tmp_path / "bcc.json").write_text(json.dumps([corrected]), encoding="utf-8")
    assert load_checklists([tmp_path])["bcc_two_step_first"].scoring.threshold == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot be read"),
        (json.dumps({**NORI_2004, "items": []}), "non-empty list"),
        (
            json.dumps({**NORI_2004, "items": [{"id": "a", "label": "A", "points": "two"}]}),
            "whole-number 'points'",
        ),
        (
            json.dumps({**NORI_2004, "items": NORI_2004["items"] + NORI_2004["items"][:1]}),
            "appears twice",
        ),
    ],
)
def test_a_broken_clinic_file_is_named_in_the_error(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "broken.json").write_text(content, encoding="utf-8")
    with pytest.raises(CaseStoreError, match=message) as caught:
        load_checklists([tmp_path])
    assert "broken.json" in str(caught.value)


def test_store_falls_back_to_builtins_and_warns_on_a_broken_clinic_file(
    data_dir: Path, tmp_path: Path
) -> None:
    folder = data_dir / "checklists"
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text("[", encoding="utf-8")
    with CaseStore(tmp_path / "cases.sqlite3") as store:
        assert set(store.checklists) == set(builtin_checklists())
        assert store.startup_warning is not None
        assert "broken.json" in store.startup_warning


def test_the_cases_package_stays_headless() -> None:
    code = (
        "import sys, rcm_viewer.cases; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'torch', 'pyqtgraph')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
