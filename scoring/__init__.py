"""Pure array scoring for smart-sizing (Adaptive Label Optimization).

Arrays in, arrays (and reasons) out: no I/O, no torch, no Label Studio. Shapes follow
cleanlab / scikit-learn conventions: ``pred_probs (n, k)``, ``embeddings (n, d)``,
``labels (n,)`` with integer classes in ``[0, k)``. See docs/SCORING.md for the formulas.
"""
