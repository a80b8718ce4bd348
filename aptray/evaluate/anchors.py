"""Published figures the results table is read against (their own data and protocol, not re-run here).

XAI-APT (Mohammed et al. 2026; repository waleedk7/XAI-APT-LLMs, file ``re/NEW_comprehensive_metrics_mpnet.csv``
at commit 2b8f7e6): mpnet sentence embeddings of the DARPA TC **Engagement 3** process contexts, 11
autoencoder families, one test split, figures on test (no selection on validation). Our folders are
Engagement 2 (bovia/pandex) of the same systems, so an anchor is matched by system and context only: it says
what the method reaches on that system's behaviour, not on these rows. ``ae`` is their plain autoencoder
("Baseline" in the file); ``best`` the best of the 11 on test AUC-ROC, with its name.
"""

from __future__ import annotations

from dataclasses import dataclass

from aptray.config import Aspect


@dataclass(frozen=True)
class Anchor:
    """One published AUC-ROC / PR-AUC figure."""

    auc_roc: float
    pr_auc: float
    model: str


XAI_APT_SOURCE = "XAI-APT (E3, mpnet, on test): waleedk7/XAI-APT-LLMs re/NEW_comprehensive_metrics_mpnet.csv"

#: (system, context) -> (their AE, their best of 11 families)
XAI_APT_MPNET: dict[tuple[str, Aspect], tuple[Anchor, Anchor]] = {
    ("5dir", Aspect.ALL): (Anchor(0.9431, 0.0534, "AE"), Anchor(0.9586, 0.0962, "Deep SVDD")),
    ("5dir", Aspect.EVENT): (Anchor(0.8685, 0.0285, "AE"), Anchor(0.8685, 0.0285, "AE")),
    ("5dir", Aspect.EXEC): (Anchor(0.8993, 0.2878, "AE"), Anchor(0.9524, 0.0896, "Beta-VAE")),
    ("5dir", Aspect.NETFLOW): (Anchor(0.9538, 0.5561, "AE"), Anchor(0.9692, 0.5903, "Robust AE")),
    ("5dir", Aspect.PARENT): (Anchor(0.9234, 0.0304, "AE"), Anchor(0.9442, 0.0399, "Attention AE")),
    ("cadets", Aspect.ALL): (Anchor(0.9989, 0.1303, "AE"), Anchor(0.9989, 0.1303, "AE")),
    ("cadets", Aspect.EVENT): (Anchor(0.8700, 0.0021, "AE"), Anchor(0.9001, 0.0024, "GMVAE")),
    ("cadets", Aspect.EXEC): (Anchor(0.9996, 0.6768, "AE"), Anchor(0.9996, 0.6768, "AE")),
    ("cadets", Aspect.NETFLOW): (Anchor(0.9410, 0.5024, "AE"), Anchor(0.9460, 0.4909, "Deep SVDD")),
    ("cadets", Aspect.PARENT): (Anchor(0.9673, 0.3349, "AE"), Anchor(0.9673, 0.3349, "AE")),
    ("clearscope", Aspect.ALL): (Anchor(0.9943, 0.6364, "AE"), Anchor(0.9943, 0.6364, "AE")),
    ("clearscope", Aspect.EVENT): (Anchor(0.9119, 0.6240, "AE"), Anchor(0.9350, 0.4967, "Attention AE")),
    ("clearscope", Aspect.EXEC): (Anchor(0.9913, 0.7646, "AE"), Anchor(0.9913, 0.7646, "AE")),
    ("clearscope", Aspect.NETFLOW): (Anchor(0.9695, 0.6402, "AE"), Anchor(0.9840, 0.6896, "Deep SVDD")),
    ("trace", Aspect.EVENT): (Anchor(0.8627, 0.1285, "AE"), Anchor(0.8795, 0.1197, "Robust AE")),
    ("trace", Aspect.EXEC): (Anchor(0.9438, 0.8212, "AE"), Anchor(0.9743, 0.1468, "DAE")),
    ("trace", Aspect.NETFLOW): (Anchor(0.9894, 0.6714, "AE"), Anchor(0.9894, 0.6714, "AE")),
    ("trace", Aspect.PARENT): (Anchor(0.9702, 0.1376, "AE"), Anchor(0.9702, 0.1376, "AE")),
}


def xai_apt(dataset: str, aspect: str | None) -> tuple[Anchor, Anchor] | None:
    """The XAI-APT anchors of an ADAPT dataset (``bovia/cadets``) and context, matched by system; None if none."""
    if aspect is None:
        return None
    system = dataset.rsplit("/", 1)[-1]
    try:
        return XAI_APT_MPNET.get((system, Aspect(aspect)))
    except ValueError:
        return None
