"""Request and response models of the online detector's HTTP API (validated by FastAPI, shown in OpenAPI)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventFormat(StrEnum):
    """How the events of a request are written: a source's raw records (:data:`aptray.io.sources.SOURCES`), or
    sentences."""

    ADAPT = "adapt"  # CSV lines of a Process<Aspect>.csv (header first or in ``header``), read as the artifact's aspect
    BETH = "beth"  # BETH CSV lines (header optional) or JSON objects with BETH column names (other keys ignored)
    AUDITD = "auditd"  # raw audit.log lines; records of one event are grouped by their serial
    CDM = "cdm"  # DARPA TC CDM JSON records (objects or JSON text)
    SENTENCE = "sentence"  # sentences already templated by the client


class ScoreRequest(_Model):
    """A batch of raw events of one format."""

    format: EventFormat = Field(description="How the events are written: adapt, beth, auditd, cdm or sentence.")
    events: list[str | dict[str, Any]] = Field(
        min_length=1,
        description="The events: text lines (CSV, audit.log, JSON text, sentences) or JSON objects.",
    )
    model: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Which of the server's detectors scores the events (GET /v1/models lists them); default: "
        "the server's default artifact.")
    header: list[str] | None = Field(
        None,
        description="CSV column names for BETH or ADAPT lines sent without a header line (BETH default: its 16 "
        "columns).",
    )
    explain: bool = Field(
        False, description="Explain each anomalous event (``explanation``), as far as the artifact supports it "
        "(GET /v1/model ``explanations``): its nearest benign training sentences with their cosine similarity "
        "(nearest_benign); the part of its sentence whose change lowers the score most, among its parts benign "
        "training never had beside their condition where there are any (a value field removed or "
        "replaced by its most frequent benign value for that action, whichever scores lower; the actor and action "
        "removed), with the variant's score "
        "(attribution: raw events of a detector that scores single events); what benign training never had: "
        "process-context attributes, single events' parts beside their condition (unseen_attributes). Costs extra "
        "encoder passes for anomalous events only.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "format": "beth",
                    "events": [
                        "1809.495787,381,7337,1,100,4026532231,systemd-resolve,ip-10-100-1-217,41,socket,"
                        "0x7f,3,15,\"[{'name': 'domain', 'type': 'int', 'value': 'AF_UNIX'}]\",0,0"
                    ],
                },
                {"format": "sentence", "events": ["Process <pid> (sshd), child of process 1, opened /etc/shadow."]},
            ]
        },
    )


class Attribution(_Model):
    """The part of an event's sentence that makes it unusual: the event field (process_name, action, object_path,
    object_addr, args, ...) or process-context aspect (events, execs, parents, netflows) whose change lowers the
    score most: a value field (object path or address, args, return value, executables) removed or replaced by its
    most frequent benign value for the event's action, whichever scores lower; the process name, ppid, uid and
    action removed; a context aspect removed (:mod:`aptray.triage.attribute`)."""

    part: str = Field(description="The field or aspect replaced or removed.")
    value: str = Field(description="Its value in the event (cut to 120 characters).")
    score: float = Field(description="The event's score.")
    score_without: float = Field(description="The score of its sentence with that part replaced or removed.")


class Explanation(_Model):
    """Why an event is unusual: the nearest benign behaviour the detector was trained on, the part of the sentence
    that drives the score, and the attributes benign training never had."""

    nearest_benign: list[str] = Field(default_factory=list,
                                      description="The most similar benign training sentences, most similar first.")
    similarity: list[float] = Field(default_factory=list, description="Their cosine similarity to the event's "
                                                                      "sentence.")
    attribution: Attribution | None = Field(None, description="The part whose change lowers the score "
                                                              "most, among the parts benign training never had "
                                                              "beside their condition where any was tried (so its "
                                                              "score_without may be above the score: the unseen "
                                                              "part is named even where changing it alone does not "
                                                              "lower the score); None when no part could be tried.")
    unseen_attributes: list[str] | None = Field(
        None, description="What benign training never had (at most 20): a process context's attribute values, "
        "as '<aspect>: <value>'; a single event's parts whose value benign training never had beside their "
        "condition (the program; the action given the program; a value given the action), as '<part>: <value> "
        "(never with <condition> <its value>)'; attribution tries these parts first.")


class EventScore(_Model):
    """The detector's verdict on one event."""

    index: int = Field(description="Position in the request's events of the (first) item this event came from.")
    record_id: str = Field(description="The event's id: the source's own UUID (CDM, ADAPT), else "
                                       "'<source>:<request_id>:<line>' (its line in the request's events, a header "
                                       "line counted), or 'sentence:<request_id>:<n>' for sentences.")
    sentence: str = Field(description="The templated sentence that was embedded.")
    score: float = Field(description="Anomaly score, higher = more anomalous.")
    threshold: float = Field(description="The artifact's alert threshold.")
    tier: str | None = Field(description="Highest alert tier reached (None below every tier).")
    is_anomaly: bool = Field(description="score >= threshold.")
    artifact_id: str = Field(description="Which detector artifact scored it.")
    explanation: Explanation | None = Field(
        None, description="With ``explain``: for an anomalous event, the benign behaviour it is closest to.")


class RejectedEvent(_Model):
    """An event that could not be parsed (the batch path would quarantine it)."""

    index: int = Field(description="Position in the request's events.")
    reason: str = Field(description="Why it was rejected (no event content).")


class ItemCounts(_Model):
    """What became of a request's items: ``items`` = ``scored`` + ``rejected`` + ``context``."""

    items: int
    scored: int = Field(description="Items that gave at least one scored event.")
    rejected: int = Field(description="Items that could not be parsed (see ``rejected``).")
    context: int = Field(description="Records that only inform other events (CDM subjects and objects, the later "
                                     "records of a multi-record auditd event).")


class ScoreResponse(_Model):
    """Scores of every parsed event, and the events that were rejected."""

    artifact_id: str
    request_id: str = Field(description="The request's X-Request-ID, or the one made for it.")
    results: list[EventScore]
    rejected: list[RejectedEvent]
    counts: ItemCounts
    took_ms: float = Field(description="Time spent in the replica, parse to scores.")


class EmbedderInfo(_Model):
    """The sentence encoder an artifact was trained with."""

    model_id: str
    dim: int
    revision: str | None = None


class ModelInfo(_Model):
    """Metadata of a loaded detector artifact."""

    name: str = Field("default", description="The name requests use to pick it (``model``).")
    artifact_id: str
    artifact: str = Field(description="Where the artifact was loaded from.")
    kind: str = Field(description="Detector kind (reconstruction, iforest, ...).")
    params: dict[str, Any]
    threshold: float
    threshold_method: str | None = None
    tiers: dict[str, float]
    embedder: EmbedderInfo
    template_version: str | None
    template: dict[str, Any] | None
    device: str
    formats: list[EventFormat]
    source: str | None = Field(None, description="The source the detector was trained on (requests of another "
                                                 "format are refused unless the server allows mismatches).")
    aspect: str | None = Field(None, description="The process context it was trained on (None: single events).")
    explanations: list[str] = Field(default_factory=list, description="What ``explain`` returns for this "
                                    "artifact: nearest_benign (it keeps benign training sentences), attribution (it "
                                    "scores single events, not windows), unseen_attributes (it keeps the benign "
                                    "attribute vocabulary of process contexts or the benign pairs of single "
                                    "events' parts).")
    window: int | None = Field(None, description="Events per window of a windowed detector (LSTM-AE): each event "
                                                 "is scored with the events of its process before it in the same "
                                                 "request.")


class Health(_Model):
    """Liveness answer, with the answering replica's counters since it started."""

    status: str = "ok"
    artifact_id: str
    requests: int = Field(0, description="Score requests this replica answered.")
    events: int = Field(0, description="Events it scored.")
    micro_batches: int = Field(0, description="Encoder/detector passes (each may hold several requests' events).")
    largest_micro_batch: int = Field(0, description="Most events in one pass.")
    mean_recent_micro_batch: float = Field(0.0, description="Mean events per pass over the last 1,000 passes.")
    parses: int = Field(0, description="Parse passes (each may hold several requests' events).")
    largest_parse: int = Field(0, description="Most requests in one parse pass.")
    model_busy_s: float = Field(0.0, description="Seconds the encoder/detector passes ran: its change over an "
                                "interval, divided by the interval, is the share of the time the model worked "
                                "(near 1: the model is the limit; well below under load: the requests' path is).")
    parse_busy_s: float = Field(0.0, description="Seconds the parse passes ran (parsing and templating).")


class ErrorResponse(_Model):
    """Every error answer: a message (naming the field for validation errors) and details."""

    message: str
    errors: list[dict[str, Any]] = Field(default_factory=list)
