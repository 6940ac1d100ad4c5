"""Pure array scoring for smart-sizing (Adaptive Label Optimization).

Arrays in, arrays (and reasons) out: no I/O, no torch, no Label Studio. Shapes follow
cleanlab / scikit-learn conventions: ``pred_probs (n, k)``, ``embeddings (n, d)``,
``labels (n,)`` with integer classes in ``[0, k)``. See docs/SCORING.md for the formulas.
"""

from scoring.audit import (
    class_thresholds,
    confident_joint,
    label_issues,
    label_quality,
    systematic_confusions,
)
from scoring.disagreement import (
    Consensus,
    VoteStats,
    annotator_model_disagreement,
    consensus,
    vote_stats,
)
from scoring.escalation import EscalationThresholds, sme_escalation
from scoring.neighbors import (
    Neighbors,
    kmeans,
    knn,
    knn_recall,
    near_duplicates,
    normalize,
    typicality,
    uniqueness,
)
from scoring.priority import (
    DEFAULT_WEIGHTS,
    PriorityResult,
    class_rarity,
    cold_start_labels,
    priority,
    queue_priority,
    select_batch,
    select_typical,
)
from scoring.stopping import (
    LearningCurve,
    StoppingDecision,
    cohens_kappa,
    fit_learning_curve,
    stopping_rule,
)
from scoring.uncertainty import UNCERTAINTY_METHODS, uncertainty

__all__ = [
    "DEFAULT_WEIGHTS",
    "UNCERTAINTY_METHODS",
    "Consensus",
    "EscalationThresholds",
    "LearningCurve",
    "Neighbors",
    "PriorityResult",
    "StoppingDecision",
    "VoteStats",
    "annotator_model_disagreement",
    "class_rarity",
    "class_thresholds",
    "cohens_kappa",
    "cold_start_labels",
    "confident_joint",
    "consensus",
    "fit_learning_curve",
    "kmeans",
    "knn",
    "knn_recall",
    "label_issues",
    "label_quality",
    "near_duplicates",
    "normalize",
    "priority",
    "queue_priority",
    "select_batch",
    "select_typical",
    "sme_escalation",
    "stopping_rule",
    "systematic_confusions",
    "typicality",
    "uncertainty",
    "uniqueness",
    "vote_stats",
]
