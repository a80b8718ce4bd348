"""Short human summaries of each command's result, written to stderr after it ends (stdout keeps its JSON line)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _alerts(result: Mapping[str, Any]) -> str:
    from aptray.triage.incidents import alerts_in_incidents  # numpy and pyarrow: not at the CLI's import

    return alerts_in_incidents(int(result["alerts"]), int(result.get("incidents") or 0))


def _secs(result: Mapping[str, Any]) -> str:
    return f" in {float(result['seconds']):.1f} s" if result.get("seconds") is not None else ""


def _quarantined(result: Mapping[str, Any], key: str = "rows_quarantined") -> str:
    q = result.get(key) or 0
    return "none quarantined" if not q else f"{_n(q)} quarantined (reasons in quarantine/)"


def lines_read(result: Mapping[str, Any], rows: int, kind: str) -> list[str]:
    """Where the input's lines went (:data:`aptray.io.files.LINE_CLASSES`): into the ``rows`` kept rows (several
    lines can make one row: an auditd event's records), quarantined (a row each), blank, headers, context records;
    nothing where the lines were not counted (an input of sentences)."""
    lines = result.get("lines") or {}
    if not lines.get("lines"):
        return []
    parts = [f"{_n(lines.get('record', 0))} in the {_n(rows)} {kind} rows",
             f"{_n(lines.get('quarantined', 0))} quarantined (a row each)"]
    parts += [f"{_n(lines[k])} {word}" for k, word in (("blank", "blank"), ("header", "header"),
                                                        ("context", "context records (no row of their own)"),
                                                        ("unaccounted", "unaccounted")) if lines.get(k)]
    container = lines.get("container_records")
    of = f" ({'all' if container == lines['lines'] else _n(container)} of them Avro records)" if container else ""
    return [f"lines read: {_n(lines['lines'])}{of}: {', '.join(parts)}"]


def templatize_lines(result: Mapping[str, Any], out: str) -> list[str]:
    """``aptray templatize``: rows, distinct sentences, quarantine, where the lines went, where."""
    return [f"templatized {_n(result['rows'])} rows into {_n(result['distinct_sentences'])} distinct sentences, "
            f"{_quarantined(result, 'quarantined')}{_secs(result)}",
            *lines_read(result, result["rows"], "templatized"),
            f"sentences: {out}"]


def embed_lines(result: Mapping[str, Any], out: str) -> list[str]:
    """``aptray embed``: rows, distinct sentences, encoded vs cached, where."""
    return [f"embedded {_n(result['rows'])} rows: {_n(result['distinct_sentences'])} distinct sentences, "
            f"{_n(result['encoded'])} encoded, {_n(result.get('cache_hits', 0))} from the cache{_secs(result)}",
            f"embeddings: {out}"]


def train_lines(result: Mapping[str, Any]) -> list[str]:
    """``aptray train``: detector, rows, threshold, validation AUC, where."""
    rows = result.get("rows_used", result.get("rows"))
    line = f"trained {result['model']} on {_n(rows)} rows"
    if result.get("excluded_malicious"):
        line += f" ({_n(result['excluded_malicious'])} labelled malicious left out)"
    thresholds = result.get("thresholds") or {}
    if isinstance(thresholds, Mapping) and thresholds.get("threshold") is not None:
        line += f"; alert threshold {float(thresholds['threshold']):.4g}"
    validation = result.get("validation") or {}
    if isinstance(validation, Mapping) and validation.get("auc_roc") is not None:
        line += f"; validation AUC-ROC {float(validation['auc_roc']):.3f}"
    return [line + _secs(result), f"artifact: {result['artifact']}"]


def score_lines(result: Mapping[str, Any], out: str, top: list[dict[str, Any]],
                evaluation: Mapping[str, Any] | None = None) -> list[str]:
    """``aptray score``: rows, quarantine, alerts and incidents, the evaluation where labelled, the top alerts,
    where."""
    skipped = f", {_n(result['files_skipped'])} done earlier" if result.get("files_skipped") else ""
    listed = result["files"]
    read, held = result.get("files_read", listed), max(result.get("files_in_output", listed), listed)
    files = f"{_n(read)} file(s)" if read == held else f"{_n(read)} of {_n(held)} file(s)"
    if held > listed:  # the folder also holds files scored into it from another input: the counts are the folder's
        files, skipped = f"{files} in the output folder ({_n(listed)} listed now{skipped})", ""
    elif read != held:
        files += " listed"
    lines = [f"scored {_n(result['rows_scored'])} of {_n(result['rows_read'])} rows from {files}{skipped}, "
             f"{_quarantined(result)}{_secs(result)}",
             *lines_read(result, result["rows_scored"], "scored"),
             _alerts(result)]
    lines += evaluation_lines(evaluation or {})
    lines += coverage_lines(result, "retrain with more of the normal behaviour")
    lines += alert_lines(top)
    from aptray.evaluate.score_output import OUTPUTS

    written = result.get("outputs") or [name if "." in name else f"{name}/" for name in OUTPUTS]
    lines.append(f"outputs: {out} ({', '.join(written)})")
    return lines


def score_report(result: Mapping[str, Any], out: str) -> tuple[dict[str, Any], list[str]]:
    """What ``aptray score`` and the score job add to a score result: the evaluation where the trace is labelled
    (:func:`aptray.evaluate.score_output.evaluate_scores`) and the summary lines with the top alerts."""
    from aptray.evaluate.score_output import evaluate_scores, top_alerts

    evaluation = evaluate_scores(out)
    return evaluation, score_lines(result, out, top_alerts(out, 3), evaluation)


def _twins(n: int) -> str:
    return f"{_n(n)} malicious row shares" if n == 1 else f"{_n(n)} malicious rows share"


def evaluation_lines(ev: Mapping[str, Any]) -> list[str]:
    """The ``labelled:`` line of a scored trace with labels of both kinds
    (:func:`aptray.evaluate.score_output.evaluate_scores`): AUC-ROC, PR-AUC and, where benign rows share attacks'
    sentences, what any score of the sentence alone can reach; nothing for an unlabelled trace."""
    if ev.get("auc_roc") is None:
        return []
    ceiling = (f"; any score of the sentence alone reaches at most AUC-ROC {ev['sentence_ceiling']:.3f} here "
               f"({_twins(int(ev['malicious_with_benign_twin']))} a benign row's sentence)"
               if ev.get("malicious_with_benign_twin") else "")
    return [f"labelled: {_n(ev['malicious'])} malicious of {_n(ev['scored'])}: AUC-ROC {ev['auc_roc']:.3f}, "
            f"PR-AUC {ev['pr_auc']:.3f}{ceiling}"]


def coverage_lines(score: Mapping[str, Any], remedy: str) -> list[str]:
    """A warning where ten times more rows alerted than the threshold lets through of normal behaviour (at least
    ten alerts): the normal behaviour trained on most likely does not cover the input's (an input that is mostly
    attack is the other reading, and the line says neither is certain)."""
    expected = score.get("expected_alert_rate")
    rows, alerts = int(score.get("rows_scored") or 0), int(score.get("alerts") or 0)
    if not expected or not rows or alerts < 10 or alerts / rows < 10 * float(expected):
        return []
    return [f"warning: {alerts / rows:.0%} of the rows alerted, where the threshold lets through about "
            f"{float(expected) * 100:.2g}% of normal behaviour: the training trace likely does not cover this input's "
            f"normal behaviour ({remedy}), or the input is mostly attack"]


def alert_lines(top: list[dict[str, Any]], width: int = 110) -> list[str]:
    """The top distinct alert sentences, one line each: score, tier, the start of the sentence (its start and end
    where two of them begin alike beyond the cut) and, where several alerts share it, how many."""
    shown = top[:3]
    texts = [str(a.get("sentence") or "") for a in shown]
    heads = [t if len(t) <= width else t[: width - 3] + "..." for t in texts]
    scores = [f"{float(a['score']):.4g}" for a in shown]
    score_width = max(map(len, scores), default=0)  # 0.001306 and 0.00126 line up
    out = []
    for a, text, head, score in zip(shown, texts, heads, scores, strict=True):
        if heads.count(head) > 1 and len(text) > width:  # they differ after the cut: show the start and the end
            keep = (width - 3) // 2
            head = text[:keep] + "..." + text[-(width - 3 - keep):]
        spread = int(a.get("incidents") or 1)
        repeats = (f" (x{a['alerts']}" + (f", in {spread} incidents" if spread > 1 else "") + ")"
                   if int(a.get("alerts") or 1) > 1 else "")
        out.append(f"  {score:<{score_width}} {a.get('tier') or '':6} {head}{repeats}")
    return out


def run_lines(result: Mapping[str, Any]) -> list[str]:
    """``aptray run``: each stage in one line, the evaluation where labelled, the top alerts, where."""
    stages = result["stages"]
    emb, tr, sc = stages["embed"], stages["train"], stages["score"]
    done = [k for k, v in stages.items() if v.get("skipped")]
    used = tr.get("rows_used", emb["rows"])  # the benign training rows: no labelled attack, no validation row
    of = f" of {_n(emb['rows'])}" if used != emb["rows"] else ""
    lines = [f"trained {tr['model']} on {_n(used)}{of} rows embedded ({_n(emb['distinct_sentences'])} distinct "
             "sentences)"
             f"; scored {_n(sc['rows_scored'])} of {_n(sc['rows_read'])} rows, {_quarantined(sc)}",
             *lines_read(sc, sc["rows_scored"], "scored"),
             _alerts(sc)]
    lines += evaluation_lines(result.get("evaluation") or {})
    labelled = tr.get("excluded_malicious", 0) or (tr.get("validation") or {}).get("labelled_malicious", 0)
    if result.get("trained_on_input") and not labelled:  # nothing was left out of training: attacks included
        lines.append("note: INPUT has no malicious labels, so the model learned all of it as normal: an attack in it "
                     "scores as seen, and its nearest benign sentence can be itself; pass a clean trace with --train")
    lines += coverage_lines(sc, "give more of it with --train")
    lines += alert_lines(result.get("top_alerts") or [])
    if done:
        lines.append(f"done earlier and skipped: {', '.join(done)}")
    lines.append(f"report: {result['outputs']['report']}  ({_secs(result).strip() or 'done'})")
    return lines


def experiment_lines(result: Mapping[str, Any], out: str) -> list[str]:
    """``aptray experiment``: targets, runs, failed runs, where the report is."""
    failed = f", {_n(result['errors'])} failed (see metrics.json)" if result.get("errors") else ""
    skipped = f" ({_n(result['skipped'])} skipped)" if result.get("skipped") else ""
    runs = f"{_n(result['runs'])} run{'' if result['runs'] == 1 else 's'}"
    return [f"experiment: {runs} over {_n(result['targets'])} dataset x context target(s){skipped}"
            f"{failed}{_secs(result)}",
            *chosen_lines(result.get("chosen") or [], out),
            f"report: {result.get('report_html', out)}; metrics: {result['metrics']}"]


def chosen_lines(chosen: list[Mapping[str, Any]], out: str, most: int = 5) -> list[str]:
    """Per dataset (``most`` of them), its context whose choice on validation has the best validation AUC-ROC,
    and the ``aptray run`` command that trains and scores it (:mod:`aptray.evaluate.deploy`)."""
    best: dict[str, Mapping[str, Any]] = {}
    for c in chosen:
        held = best.get(c["dataset"])
        if c.get("val_auc_roc") is not None and (held is None or c["val_auc_roc"] > held["val_auc_roc"]):
            best[c["dataset"]] = c
    if not best:
        return []
    from aptray.evaluate.deploy import CHOSEN
    from aptray.io.fs import join

    lines = [f"chosen on validation, each dataset's best context (configs of all {_n(len(chosen))} in "
             f"{join(out, CHOSEN)}/):"]
    for c in list(best.values())[:most]:
        what = c["detector"] + (f" of {', '.join(c['members'])}" if c.get("members") else "")
        lines += [f"  {c['dataset']} {c['aspect'] or 'events'}: {c['embedder']} {what}, validation AUC-ROC "
                  f"{c['val_auc_roc']:.3f}",
                  f"    {c['command']}"]
    if len(best) > most:
        lines.append(f"  and {_n(len(best) - most)} more dataset(s)")
    return lines
