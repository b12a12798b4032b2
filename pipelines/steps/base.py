"""What every step kind's ``execute`` receives and returns.

A pipeline passes one JSON document from step to step: the run's input first,
then each step's output. A step is a pure function of (its input document, its
config from the release, the run's seed) plus whatever it learns from outside,
which it records in ``StepResult.recordings`` so that replay can feed the same
answers back instead of asking again.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipelines.providers import ModelRequest, ModelResponse


class StepError(Exception):
    """The step cannot produce an output from this input: the run fails with
    this message as its reason (``transient`` errors are retried first).
    ``recordings`` keep what was learned from outside before it failed (a
    model call that failed, or one whose answer could not be used), so the
    failure is on the record and replays the same way."""

    def __init__(self, message: str, *, transient: bool = False, recordings: list[dict] | None = None):
        super().__init__(message)
        self.transient = transient
        self.recordings = recordings or []


@dataclass(frozen=True)
class StepContext:
    run_id: int
    pipeline_slug: str
    step_position: int
    seed: int
    # This step's part of the release snapshot: {"kind", "name", "config",
    # "prompt": {"slug", "body", "variables"} | None, "model": {...ModelConfig fields} | None}
    step: dict
    # The release's approval policy snapshot, or None (used by the gate).
    policy: dict | None
    # The release's input JSON Schema (used by validate when its config has none).
    input_schema: dict
    # How a model step reaches its model; replay passes one that returns recordings.
    call_model: Callable[[ModelRequest], ModelResponse]
    # Where the run's input came from (the API's source identifier, "cli", ...).
    source: str = ""
    # How a deliver step sends to an external consumer: (config, document) ->
    # a record of the delivery. The engine binds it to the run and step, so
    # the delivery row and its stable id exist before anything is sent.
    deliver: Callable[[dict, dict], dict] | None = None
    # The run's workspace: whose credentials and allowed hosts a model call uses.
    workspace_id: int | None = None
    # How a deliver step with ``"format": "pdf"`` makes its report of the document:
    # (document=, config=) -> the report (its ``record()`` goes in the decision), or None
    # where there is no run to report on. The engine and replay bind it to the run and step.
    report: Callable[..., Any] | None = None


@dataclass
class StepResult:
    output: dict
    recordings: list[dict] = field(default_factory=list)  # model calls, exactly as sent and received
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    # The gate's verdict: {"passed": bool, "reasons": [...], ...}; None for other kinds.
    decision: dict | None = None


def json_copy(value):
    """A deep copy of a JSON document (dicts, lists and immutable scalars). A
    step copies its input before changing it; ``copy.deepcopy`` keeps a memo
    for shared and cyclic references that a JSON document cannot have, and
    costs several times more."""
    if type(value) is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if type(value) is list:
        return [json_copy(item) for item in value]
    return value
