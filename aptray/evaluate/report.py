"""The experiment report: DIR/report.md and DIR/report.html with PNG plots, built from DIR's files alone.

Inputs are ``DIR/metrics.json`` and ``DIR/scores/<dataset>/<aspect>/{rows,scores,tsne}.parquet`` (see
:mod:`aptray.evaluate.experiment`); plots go to ``DIR/plots/``. The report is a list of blocks (heading,
paragraph, table, image) rendered twice, as Markdown and as self-contained-layout HTML.
"""

from __future__ import annotations

import html
import json
import logging
import posixpath
import re
from typing import Any

import numpy as np

from aptray.evaluate import plots
from aptray.io.fs import join, resolve

log = logging.getLogger(__name__)

Block = tuple[Any, ...]
_METRICS = (("auc_roc", "AUC-ROC"), ("pr_auc", "PR-AUC"), ("ndcg", "nDCG"), ("f1", "F1"))


def fmt(summary: dict[str, Any] | None, metric: str = "auc_roc") -> str:
    """``mean ± std`` of a summary metric (``n/a`` when undefined on every seed)."""
    if not summary:
        return "n/a"
    m = summary.get(metric) or {}
    mean, std = m.get("mean"), m.get("std")
    if mean is None or not np.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if std else f"{mean:.3f}"


def _pair(brief: dict[str, Any] | None) -> str:
    if not brief:
        return "n/a"
    t = brief["test"]
    return f"{fmt(t, 'auc_roc').split(' ')[0]} / {fmt(t, 'pr_auc').split(' ')[0]}"


def _auc_pr(brief: dict[str, Any] | None) -> str:
    """``AUC / PR-AUC (embedder detector)`` of a best-entry."""
    if not brief:
        return "n/a"
    return f"{_pair(brief)} ({brief['embedder']} {brief['detector']})"


def results_table(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The headline table: per dataset x aspect, aptray's AUC / PR-AUC chosen on validation and best on test, each
    baseline's (mean over seeds; its representation chosen on validation by the same rule), the best baseline on
    test, and the published anchors of the same system and context (:mod:`aptray.evaluate.anchors`)."""
    from aptray.detectors.registry import BASELINE_DETECTORS
    from aptray.evaluate.anchors import xai_apt

    targets = {(t["dataset"], t["aspect"]): t for t in doc["targets"]}
    header = ["dataset", "aspect", "rows", "malicious", "aptray, chosen on validation",
              "aptray, best on test (optimistic)", *BASELINE_DETECTORS, "baseline, best on test (optimistic)",
              "sentence ceiling (AUC-ROC)",
              "XAI-APT AE (E3)", "XAI-APT best of 11 (E3)"]
    rows = []
    for b in doc["best"]:
        t = targets.get((b["dataset"], b["aspect"]), {})
        anchors = xai_apt(b["dataset"], b["aspect"])
        published = ([f"{a.auc_roc:.3f} / {a.pr_auc:.3f}" + ("" if a.model == "AE" else f" ({a.model})")
                      for a in anchors] if anchors else ["", ""])
        rows.append([b["dataset"], str(b["aspect"]), str(t.get("rows", "")), str(t.get("malicious", "")),
                     _auc_pr(b["aptray_selected"]), _auc_pr(b["aptray_best_on_test"]),
                     *[_pair(b["baselines"].get(n)) for n in BASELINE_DETECTORS],
                     _auc_pr(b.get("baseline_best_on_test")), _ceiling(t), *published])
    return header, rows


def _cut(sentence: str, limit: int = 300) -> str:
    """A sentence for a report table: whole, or its first ``limit`` characters and an ellipsis (a bare cut read as
    real values: "206.92.60." for an address, "ports 443 and 121" for 12132)."""
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def _ceiling(target: dict[str, Any]) -> str:
    """A target's sentence ceiling (test AUC-ROC), with its malicious rows that have a benign twin."""
    ceiling = target.get("sentence_ceiling")
    if not ceiling:
        return "n/a"
    twins = target.get("malicious_with_benign_twin")
    return fmt(ceiling, "auc_roc").split(" ")[0] + (f" ({twins} twin{'s' if twins != 1 else ''})" if twins else "")


def merge_metrics(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several experiments' ``metrics.json`` (e.g. one per embedder) as one: targets, runs and summary joined,
    the choice on validation made again over all of them. A target met in several documents keeps the first one's
    counts and gains every document's ``embedders`` records (the first one's wins where both name an embedder).

    Raises:
        ConfigError: the documents' sentences come from different template versions (their figures are not of
            the same sentences, so one table would compare unlike things).
    """
    from aptray.detectors.registry import APTRAY_DETECTORS
    from aptray.errors import ConfigError
    from aptray.evaluate.experiment import best
    from aptray.evaluate.fusion import FUSION

    versions = {str((d.get("template") or {}).get("version")) for d in docs}
    if len(versions) > 1:
        raise ConfigError(f"the experiments' sentences are of template versions {', '.join(sorted(versions))}; "
                          "re-run the older ones with this aptray before merging them into one table")
    targets: dict[tuple[Any, Any], dict[str, Any]] = {}
    for d in docs:
        for t in d["targets"]:
            kept = targets.setdefault((t["dataset"], t["aspect"]), {**t, "embedders": dict(t.get("embedders") or {})})
            for name, record in (t.get("embedders") or {}).items():
                kept["embedders"].setdefault(name, record)
    summary = [s for d in docs for s in d["summary"]]
    return {"targets": list(targets.values()), "runs": [r for d in docs for r in d["runs"]], "summary": summary,
            "best": best(summary, (*APTRAY_DETECTORS, FUSION)), "configs": [d.get("config") for d in docs],
            "templates": [d.get("template") for d in docs]}


RESULTS_BEGIN, RESULTS_END = "<!-- results:begin -->", "<!-- results:end -->"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_readme_table(readme: str, table: str) -> None:
    """Replace the text between the results markers of ``readme`` with ``table``.

    Raises:
        ValueError: the file lacks the markers.
    """
    with open(readme, encoding="utf-8") as fh:
        text = fh.read()
    start, end = text.find(RESULTS_BEGIN), text.find(RESULTS_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} has no {RESULTS_BEGIN} ... {RESULTS_END} block to replace")
    text = text[: start + len(RESULTS_BEGIN)] + "\n" + table + "\n" + text[end:]
    with open(readme, "w", encoding="utf-8") as fh:
        fh.write(text)


def _slug(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(p) for p in parts if p is not None)).strip("_")


class _Writer:
    """Collects blocks and writes PNGs under ``DIR/plots``."""

    def __init__(self, out_uri: str) -> None:
        self.out_uri = out_uri
        self.fs, self.root = resolve(out_uri)
        self.blocks: list[Block] = []

    def add(self, *block: Any) -> None:
        self.blocks.append(block)

    def image(self, png: bytes | None, name: str, alt: str) -> None:
        if png is None:
            return
        rel = f"plots/{name}.png"
        self.fs.create_dir(posixpath.join(self.root, "plots"), recursive=True)  # only reports with plots have one
        with self.fs.open_output_stream(posixpath.join(self.root, rel)) as fh:
            fh.write(png)
        self.add("img", rel, alt)


def _read_table(uri: str) -> Any:
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, path = resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    return pq.read_table(path, filesystem=fs).to_pandas()


def _target_section(w: _Writer, doc: dict[str, Any], target: dict[str, Any]) -> None:
    from aptray.detectors.registry import TORCH_DETECTORS

    dataset, aspect = target["dataset"], target["aspect"]
    w.add("h2", f"{dataset} — {aspect or 'events'}")
    if target.get("skipped"):
        w.add("p", f"Skipped: {target['skipped']}")
        return
    w.add("p", f"{target.get('rows')} rows, {target.get('malicious')} malicious, "
               f"{target.get('distinct_sentences')} distinct sentences.")
    ceiling = target.get("sentence_ceiling")
    if ceiling and target.get("malicious_with_benign_twin"):  # otherwise every sentence's label is one-sided
        w.add("p", f"{target.get('malicious_with_benign_twin')} malicious row(s) share their exact sentence with a "
                   f"benign row ({target.get('twin_sentences')} distinct sentence(s)). No score of the sentence "
                   f"alone can pass test AUC-ROC {fmt(ceiling, 'auc_roc').split(' ')[0]} here; ranking each "
                   f"sentence by its share of attacks, the order that reaches it, gives PR-AUC "
                   f"{fmt(ceiling, 'pr_auc').split(' ')[0]} (means over seeds, from the test labels: a bound on "
                   "what the sentences allow, not a choice).")
    if target.get("aspects"):
        w.add("p", f"Per-aspect fusion of {', '.join(target['aspects'])}: each process scored on every aspect it "
                   "has (the aspects share one split of the folder's processes), the detectors and aspects fused "
                   "chosen on validation; a process missing from an aspect counts as that aspect's median benign "
                   "process. Sentences shown are ProcessAll's.")
    mine = [s for s in doc["summary"] if s["dataset"] == dataset and s["aspect"] == aspect]
    summary = [s for s in mine if s.get("protocol", "benign-split") == "benign-split"]
    unsupervised = [s for s in mine if s.get("protocol") == "unsupervised"]
    if unsupervised:
        unsupervised.sort(key=lambda s: -(s["test"].get("auc_roc", {}).get("mean") or -1))
        w.add("p", "Unsupervised protocol (Berrada et al. 2020): every process fitted without labels and ranked; "
                   "no choice is made, so the best row is optimistic.")
        w.add("table", ["embedder", "detector", "seeds", "AUC-ROC", "PR-AUC", "nDCG", "mean rank of malicious"],
              [[s["embedder"], s["detector"], f"{s['seeds'] - s['errors']}/{s['seeds']}", fmt(s["test"], "auc_roc"),
                fmt(s["test"], "pr_auc"), fmt(s["test"], "ndcg"), fmt(s["test"], "mean_rank_malicious")]
               for s in unsupervised])
    if not summary:
        return
    summary.sort(key=lambda s: -(s["test"].get("auc_roc", {}).get("mean") or -1))
    w.add("table", ["embedder", "detector", "seeds", "test AUC-ROC", "test PR-AUC", "test nDCG", "test F1",
                    "val AUC-ROC", "train s"],
          [[s["embedder"], s["detector"], f"{s['seeds'] - s['errors']}/{s['seeds']}", fmt(s["test"], "auc_roc"),
            fmt(s["test"], "pr_auc"), fmt(s["test"], "ndcg"), fmt(s["test"], "f1"), fmt(s["val"], "auc_roc"),
            fmt({"t": s["train_seconds"]}, "t")] for s in summary])
    slug = _slug(dataset, aspect)
    embedders = sorted({s["embedder"] for s in summary})
    detectors = [d for d in doc["config"]["detectors"] if any(s["detector"] == d for s in summary)]
    grid = np.full((len(embedders), len(detectors)), np.nan)
    for s in summary:
        mean = s["test"].get("auc_roc", {}).get("mean")
        if s["detector"] in detectors:  # the fusion is in the table, not the detector grid
            grid[embedders.index(s["embedder"]), detectors.index(s["detector"])] = np.nan if mean is None else mean
    w.image(plots.heatmap(grid, embedders, detectors, f"{dataset} {aspect}: mean test AUC-ROC"),
            f"{slug}-heatmap", "embedder x detector AUC heatmap")

    sdir = join(w.out_uri, "scores", *dataset.split("/"), aspect or "-")
    rows, scores = _read_table(join(sdir, "rows.parquet")), _read_table(join(sdir, "scores.parquet"))
    if rows is None or scores is None or scores.empty:
        return
    labels = rows["malicious"].to_numpy()
    test0 = scores[(scores["split"] == "test") & (scores["seed"] == 0)]

    def series(emb: str, det: str) -> tuple[np.ndarray, np.ndarray]:
        part = test0[(test0["embedder"] == emb) & (test0["detector"] == det)]
        return labels[part["row"].to_numpy()], part["score"].to_numpy()

    ranked = [s for s in summary if s["test"].get("auc_roc", {}).get("n")]
    top = ranked[:3]
    w.add("p", "Curves of the three combinations with the best mean test AUC-ROC (descriptive, not a selection).")
    w.image(plots.roc_pr([(f"{s['embedder']} {s['detector']}", *series(s["embedder"], s["detector"])) for s in top],
                         f"{dataset} {aspect}"), f"{slug}-roc-pr", "ROC and PR curves")
    torch_ranked = [s for s in ranked if s["detector"] in TORCH_DETECTORS]
    runs = {(r["embedder"], r["detector"]): r for r in doc["runs"]
            if r["dataset"] == dataset and r["aspect"] == aspect and r["seed"] == 0 and r["status"] == "ok"}
    if torch_ranked:
        b = torch_ranked[0]
        thr = (runs.get((b["embedder"], b["detector"])) or {}).get("threshold", {}).get("value")
        w.image(plots.histogram(*series(b["embedder"], b["detector"]), thr,
                                f"{b['embedder']} {b['detector']}: test reconstruction error (seed 0)"),
                f"{slug}-hist", "reconstruction-error histogram")
        hist = [(d, runs[(b["embedder"], d)].get("history")) for d in detectors if (b["embedder"], d) in runs]
        w.image(plots.losses(hist, f"{dataset} {aspect}, {b['embedder']} (seed 0)"), f"{slug}-loss", "loss curves")
    tsne = _read_table(join(sdir, "tsne.parquet"))
    if tsne is not None:
        for emb in sorted(tsne["embedder"].unique()):
            part = tsne[tsne["embedder"] == emb]
            w.image(plots.scatter(part["x"].to_numpy(), part["y"].to_numpy(), part["malicious"].to_numpy(),
                                  f"t-SNE of {emb} embeddings, {dataset} {aspect}"), _slug(slug, "tsne", emb), "t-SNE")
    if top:
        b = top[0]
        part = test0[(test0["embedder"] == b["embedder"]) & (test0["detector"] == b["detector"])]
        part = part.sort_values("score", ascending=False).head(int(doc["config"]["top_k"]))
        w.add("p", f"Top {len(part)} test anomalies of {b['embedder']} {b['detector']} (seed 0):")
        w.add("table", ["rank", "score", "malicious", "sentence"],
              [[str(i + 1), f"{sc:.4g}", str(int(labels[r])), _cut(str(rows['sentence'].iloc[r]))]
               for i, (r, sc) in enumerate(zip(part["row"], part["score"], strict=True))])
        thr = (runs.get((b["embedder"], b["detector"])) or {}).get("threshold", {}).get("value")
        if "pid" in rows.columns and thr is not None:
            _incidents_section(w, rows, test0[(test0["embedder"] == b["embedder"])
                                              & (test0["detector"] == b["detector"])], float(thr),
                               f"{b['embedder']} {b['detector']}")


def _incidents_section(w: _Writer, rows: Any, scores: Any, threshold: float, label: str, top: int = 5) -> None:
    """The test split's alerts (score >= the run's threshold) grouped into incidents: how many, the items read to
    reach every malicious alert (incidents vs alerts), and the top incidents with their alerts."""
    import pyarrow as pa

    from aptray.triage.incidents import group_incidents, items_to_full_recall

    flagged = scores[scores["score"] >= threshold].sort_values("score", ascending=False)
    if flagged.empty:
        return
    picked = rows.iloc[flagged["row"].to_numpy()].reset_index(drop=True)
    picked["score"] = flagged["score"].to_numpy()
    picked = picked.astype(object).where(picked.notna(), None)
    alerts = pa.Table.from_pylist(picked.drop(columns=["row"]).to_dict("records"))
    incidents, _ = group_incidents(alerts)
    malicious = int((picked["malicious"] == 1).sum())
    raw = max((i + 1 for i, m in enumerate(picked["malicious"]) if m == 1), default=0)
    read = items_to_full_recall(incidents, malicious)["incidents_read"]
    w.add("p", f"Incidents of {label} (seed 0): {alerts.num_rows} test alert(s) at its threshold {threshold:.4g} "
               f"({malicious} malicious) in {incidents.num_rows} incident(s), grouped by process lineage on one host; "
               f"to reach every malicious alert an analyst reads {raw} alert(s) in score order or {read} incident(s) "
               "in rank order.")
    by_id = {r: i for i, r in enumerate(alerts.column("record_id").to_pylist())}
    for inc in incidents.slice(0, top).to_pylist():
        w.add("p", f"#{inc['rank']} ({inc['alerts']} alert(s), {inc['malicious_alerts']} malicious, top score "
                   f"{inc['top_score']:.4g}): {inc['summary']}")
        members = sorted((by_id[r] for r in inc["record_ids"]), key=lambda i: -float(picked["score"].iloc[i]))[:20]
        w.add("table", ["score", "malicious", "sentence"],
              [[f"{float(picked['score'].iloc[i]):.4g}", str(picked["malicious"].iloc[i]),
                _cut(str(picked["sentence"].iloc[i]))] for i in members])


def _markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b[0] in ("h1", "h2"):
            out.append(("# " if b[0] == "h1" else "## ") + b[1])
        elif b[0] == "p":
            out.append(b[1])
        elif b[0] == "table":
            header, rows = b[1], b[2]
            esc = [[c.replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
            out.append("\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                                  *["| " + " | ".join(r) + " |" for r in esc]]))
        elif b[0] == "img":
            out.append(f"![{b[2]}]({b[1]})")
        elif b[0] == "pre":
            out.append(f"```\n{b[1]}\n```")
    return "\n\n".join(out) + "\n"


def _html(blocks: list[Block], title: str) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;"
           "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head><body>"]
    for b in blocks:
        if b[0] in ("h1", "h2", "p"):
            out.append(f"<{b[0]}>{html.escape(b[1])}</{b[0]}>")
        elif b[0] == "table":
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in b[1]) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in b[2])
            out.append("</table>")
        elif b[0] == "img":
            out.append(f"<p><img src='{html.escape(b[1])}' alt='{html.escape(b[2])}'></p>")
        elif b[0] == "pre":
            out.append(f"<pre>{html.escape(b[1])}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(out_uri: str) -> dict[str, str]:
    """Build ``report.md`` and ``report.html`` (plots in ``plots/``) from an experiment's output folder.

    Returns:
        ``{"report_md": uri, "report_html": uri}``.
    """
    w = _Writer(out_uri)
    with w.fs.open_input_stream(posixpath.join(w.root, "metrics.json")) as fh:
        doc = json.loads(fh.read())
    w.add("h1", "aptray experiment report")
    cfg = doc["config"]
    w.add("p", f"Input {doc['input']} ({doc['source']}), created {doc['created']}; embedders "
               f"{', '.join(cfg['embedders'])}; detectors {', '.join(cfg['detectors'])}; {cfg['seeds']} seed(s); "
               f"test {cfg['test_fraction']}, validation {cfg['val_fraction']} of the benign rows, malicious rows "
               f"split between validation and test; threshold {cfg['threshold']}.")
    w.add("p", "Values are means over seeds of the test split (AUC-ROC / PR-AUC). 'chosen on validation' is the "
               "embedder x detector of aptray's own (the torch models, kNN, rarity, and each seed's rank fusion of "
               "its best three on validation) with the best mean validation AUC-ROC (n/a when no validation split "
               "holds a malicious row); 'best on test' is the maximum over combinations and is optimistic. "
               "Each baseline's embedder is chosen on validation by the same rule (AVF runs on the raw 0/1 "
               "attributes); 'baseline, best on test' is the baselines' optimistic maximum. XAI-APT columns are "
               "published figures on Engagement 3 data of the same system (not these rows).")
    header, rows = results_table(doc)
    w.add("table", header, rows)
    chosen = doc.get("chosen") or []
    if chosen:  # what deploys each choice (aptray.evaluate.deploy)
        from aptray.evaluate.deploy import describe

        w.add("p", "Each choice on validation as a config in chosen/ (a fusion as the ensemble of the members its "
                   "seeds used most); the command trains it on the dataset and scores it:")
        w.add("table", ["dataset", "aspect", "chosen", "validation AUC-ROC", "command"],
              [[c["dataset"], c["aspect"] or "events", describe(c),
                f"{c['val_auc_roc']:.3f}" if c.get("val_auc_roc") is not None else "n/a", c["command"]]
               for c in chosen])
    errors = [r for r in doc["runs"] if r["status"] != "ok"]
    if errors:
        w.add("p", f"{len(errors)} run(s) failed:")
        w.add("table", ["dataset", "aspect", "embedder", "detector", "seed", "error"],
              [[r["dataset"], str(r["aspect"]), r["embedder"], r["detector"], str(r["seed"]), str(r["error"])[:200]]
               for r in errors[:50]])
    w.add("pre", json.dumps(doc.get("versions", {})))
    for target in doc["targets"]:
        _target_section(w, doc, target)
    md_uri, html_uri = join(out_uri, "report.md"), join(out_uri, "report.html")
    with w.fs.open_output_stream(posixpath.join(w.root, "report.md")) as fh:
        fh.write(_markdown(w.blocks).encode())
    with w.fs.open_output_stream(posixpath.join(w.root, "report.html")) as fh:
        fh.write(_html(w.blocks, "aptray experiment report").encode())
    log.info("report written to %s", html_uri)
    return {"report_md": md_uri, "report_html": html_uri}


#: The explanation columns of an alert in a report (:func:`explanation_cells`).
EXPLANATION_HEADER = ("top part (score once changed)", "never seen in benign training",
                      "nearest benign sentence (cosine)")


def explanation_cells(alert: dict[str, Any]) -> list[str]:
    """An alert's explanation as report cells: its top attributed part with the score of its changed sentence, its
    unseen context attributes, its nearest benign training sentence ("n/a" where the alert has none)."""
    part, without = alert.get("attribution_part"), alert.get("attribution_score_without")
    top = f"{part} = {alert.get('attribution_value')} ({without:.4g})" if part and without is not None else "n/a"
    unseen = "; ".join(alert.get("unseen_attributes") or []) or "n/a"
    near, sims = list(alert.get("nearest_benign") or []), list(alert.get("nearest_similarity") or [])
    same = bool(near) and near[0] == alert.get("sentence")  # the alert's own sentence was in benign training
    if same and len(near) > 1 and len(sims) > 1:
        nearest = f"this very sentence is in benign training; next: {near[1]} ({sims[1]:.3f})"
    elif same:
        nearest = "this very sentence is in benign training"
    else:
        nearest = f"{near[0]} ({sims[0]:.3f})" if near and sims else "n/a"
    return [top, unseen, nearest]


def record_of(alert: dict[str, Any]) -> str:
    """Where an analyst finds an alert's raw event: its record id (``<source>:<file>:<line>`` for BETH and auditd,
    the source's UUID for CDM and ADAPT, with its file), and its time where it has one."""
    rid = str(alert.get("record_id") or "")
    where = alert.get("source_file")
    text = rid if not where or str(where) in rid else f"{rid} ({where})"
    ts = alert.get("timestamp")
    if isinstance(ts, int | float) and ts >= 1e9:  # an epoch clock (BETH's counts from boot: no date to give)
        from aptray.triage.incidents import time_text

        text += " at " + time_text(float(ts))
    return text or "n/a"


def _label(value: Any) -> str:
    return "n/a" if value is None else ("malicious" if int(value) == 1 else "benign")


def write_score_report(out_uri: str, incidents: Any, alerts: Any, top: int = 10) -> dict[str, str]:
    """``report.md`` and ``report.html`` of a score job: its top incidents, each alert with its score, tier,
    sentence and explanation (:func:`explanation_cells`: top part, unseen attributes, nearest benign sentence,
    where the artifact supports them).

    Args:
        out_uri: the score job's output folder.
        incidents: the ranked incidents table (:mod:`aptray.triage.incidents`).
        alerts: every alert row, with ``incident_id``.
        top: incidents shown.
    """
    w = _Writer(out_uri)
    w.add("h1", "aptray score report")
    n_inc = incidents.num_rows
    w.add("p", f"{alerts.num_rows} alert(s) in {n_inc} incident(s); the top {min(top, n_inc)} by their highest "
               "score. An incident is the alerts of one process lineage (a process, its parent and children on one "
               "host) without an hour's gap; alerts without a pid (process contexts) are one incident per sentence "
               "and host. An alert's top part is, first, a part benign training never had beside its condition (a "
               "program never seen, an action the program never performed, a value the action never had), else the "
               "event field or context aspect whose change (removed, or replaced by its benign value) lowers its "
               "score most; shown with the score of that changed sentence, which may be higher for a never-seen "
               "part.")
    rows = incidents.slice(0, top).to_pylist()
    w.add("table", ["rank", "incident", "alerts", "top score", "tier", "hosts", "summary"],
          [[str(r["rank"]), r["incident_id"], str(r["alerts"]), f"{r['top_score']:.4g}", str(r["top_tier"]),
            ", ".join(r["hosts"]), r["summary"]] for r in rows])
    by_incident: dict[str, list[dict[str, Any]]] = {}
    for a in alerts.to_pylist():
        by_incident.setdefault(a.get("incident_id") or "", []).append(a)
    for r in rows:
        w.add("h2", f"#{r['rank']} {r['incident_id']}: {r['alerts']} alert(s)")
        members = sorted(by_incident.get(r["incident_id"], []), key=lambda a: -a["score"])[:50]
        labelled = any(a.get("malicious") is not None for a in members)
        table = [[f"{a['score']:.4g}", str(a.get("tier")), record_of(a),
                  *([_label(a.get("malicious"))] if labelled else []), str(a.get("sentence")), *explanation_cells(a)]
                 for a in members]
        w.add("table", ["score", "tier", "record", *(["label"] if labelled else []), "sentence", *EXPLANATION_HEADER],
              table)
    with w.fs.open_output_stream(posixpath.join(w.root, "report.md")) as fh:
        fh.write(_markdown(w.blocks).encode())
    with w.fs.open_output_stream(posixpath.join(w.root, "report.html")) as fh:
        fh.write(_html(w.blocks, "aptray score report").encode())
    return {"report_md": join(out_uri, "report.md"), "report_html": join(out_uri, "report.html")}
