"""DSPy-style programs: a signature (named inputs -> named outputs), optional
instructions, and a backend that runs it.

The ``offline`` backend is deterministic: the same program and inputs always
give the same outputs, named by the signature, without any model. The
``dspy`` backend runs ``dspy.Predict`` with the signature on whatever LM
DSPy is configured with (a handler module may call ``dspy.configure``, or
``BRIDGEPOOL_WORKER_DSPY_MODEL`` names one); DSPy is imported only then.
A dspy program keeps its ``dspy.Predict`` module, so what DSPy learns in it
(demos, instructions) stays with the program.

A program moves with its session as a :class:`ProgramSnapshot`: its
definition and count, and for ``dspy`` the module's own state
(``dump_state``/``load_state``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridgepool.errors import BridgePoolError, ErrorCategory

Backend = Literal["offline", "dspy"]
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def invalid_args(message: str, **context: Any) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.COMMUNICATION, "invalid_args", message, status=400, **context
    )


class ProgramDefinition(BaseModel):
    """The ``create_program`` arguments."""

    model_config = ConfigDict(extra="forbid")

    program_id: str | None = Field(default=None, min_length=1, max_length=256)
    signature: str | None = None
    inputs: list[str] | None = None
    outputs: list[str] | None = None
    instructions: str = ""
    backend: Backend | None = None

    @model_validator(mode="after")
    def _one_way_to_say_fields(self) -> ProgramDefinition:
        if self.signature is None and (self.inputs is None or self.outputs is None):
            raise ValueError("give either 'signature' or both 'inputs' and 'outputs'")
        if self.signature is not None and (self.inputs is not None or self.outputs is not None):
            raise ValueError("give either 'signature' or 'inputs'/'outputs', not both")
        return self


def _names(part: str, side: str) -> list[str]:
    names = [piece.split(":", 1)[0].strip() for piece in part.split(",")]
    bad = [n for n in names if not _FIELD.match(n)]
    if not names or bad:
        raise invalid_args(f"signature {side} must be comma-separated names; got {part.strip()!r}")
    return names


def parse_signature(signature: str) -> tuple[list[str], list[str]]:
    """``"question, context -> answer"`` -> (["question", "context"], ["answer"])."""
    if signature.count("->") != 1:
        raise invalid_args(f"signature must look like 'inputs -> outputs'; got {signature!r}")
    left, right = signature.split("->")
    return _names(left, "inputs"), _names(right, "outputs")


@dataclass
class Program:
    program_id: str
    inputs: list[str]
    outputs: list[str]
    instructions: str
    backend: Backend
    created_at: float
    executions: int = 0
    # dspy: the dspy.Predict module, built on first use or when the program arrives
    module: Any = field(default=None, repr=False, compare=False)

    @property
    def signature(self) -> str:
        return f"{', '.join(self.inputs)} -> {', '.join(self.outputs)}"

    def info(self) -> dict[str, Any]:
        return {
            "program_id": self.program_id,
            "signature": self.signature,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "instructions": self.instructions,
            "backend": self.backend,
            "created_at": self.created_at,
            "executions": self.executions,
        }


def build_program(
    definition: ProgramDefinition, program_id: str, default_backend: Backend, now: float
) -> Program:
    if definition.signature is not None:
        inputs, outputs = parse_signature(definition.signature)
    else:
        assert definition.inputs is not None and definition.outputs is not None
        inputs = _names(",".join(definition.inputs), "inputs")
        outputs = _names(",".join(definition.outputs), "outputs")
    clash = set(inputs) & set(outputs)
    if clash:
        raise invalid_args(f"fields both input and output: {sorted(clash)}")
    backend = definition.backend or default_backend
    if backend == "dspy":
        _require_dspy()
    return Program(program_id, inputs, outputs, definition.instructions, backend, now)


class ProgramSnapshot(BaseModel):
    """A program as it moves: what :meth:`Program.info` shows, and the DSPy
    module's state (``dspy`` backend, once the module exists)."""

    model_config = ConfigDict(extra="forbid")

    program_id: str = Field(min_length=1, max_length=256)
    inputs: list[str] = Field(min_length=1)
    outputs: list[str] = Field(min_length=1)
    instructions: str
    backend: Backend
    created_at: float
    executions: int = Field(ge=0)
    dspy_state: dict[str, Any] | None = None


def snapshot_program(program: Program) -> dict[str, Any]:
    """The program as JSON, for a move; DSPy saves its module's state itself."""
    dspy_state = None
    if program.backend == "dspy" and program.module is not None:
        with _dspy_lock:
            dspy_state = program.module.dump_state()
    return ProgramSnapshot(
        program_id=program.program_id,
        inputs=program.inputs,
        outputs=program.outputs,
        instructions=program.instructions,
        backend=program.backend,
        created_at=program.created_at,
        executions=program.executions,
        dspy_state=dspy_state,
    ).model_dump(mode="json")


def restore_program(data: dict[str, Any]) -> Program:
    """A moved program, rebuilt: raises ``ValidationError`` for a malformed one, a
    422 ``dspy_unavailable`` for a dspy one where DSPy is not installed."""
    snapshot = ProgramSnapshot.model_validate(data)
    program = Program(
        snapshot.program_id,
        snapshot.inputs,
        snapshot.outputs,
        snapshot.instructions,
        snapshot.backend,
        snapshot.created_at,
        snapshot.executions,
    )
    if program.backend == "dspy":
        _require_dspy()
        if snapshot.dspy_state is not None:
            module = _dspy_module(program)
            with _dspy_lock:
                module.load_state(snapshot.dspy_state)
    return program


def check_inputs(program: Program, inputs: dict[str, Any]) -> None:
    missing = [name for name in program.inputs if name not in inputs]
    unknown = [name for name in inputs if name not in program.inputs]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing inputs {missing}")
        if unknown:
            parts.append(f"unknown inputs {unknown}")
        raise invalid_args(
            f"program {program.program_id!r} ({program.signature}): " + "; ".join(parts),
            missing=missing,
            unknown=unknown,
        )


def run_offline(program: Program, inputs: dict[str, Any]) -> dict[str, str]:
    """Deterministic outputs: a digest of the program, the output name and inputs."""
    outputs = {}
    for name in program.outputs:
        material = json.dumps(
            [program.signature, program.instructions, name, inputs], sort_keys=True, default=str
        )
        digest = hashlib.sha256(material.encode()).hexdigest()[:16]
        outputs[name] = f"{name}:{digest}"
    return outputs


def dspy_available() -> bool:
    return importlib.util.find_spec("dspy") is not None


def _require_dspy() -> None:
    if not dspy_available():
        raise BridgePoolError.make(
            ErrorCategory.PYTHON,
            "dspy_unavailable",
            "backend 'dspy' needs the dspy package (pip install 'bridgepool[dspy]')",
            status=422,
        )


_dspy_lock = threading.Lock()


def configure_dspy_model(model: str) -> None:
    """Point DSPy at a model by name (e.g. ``openai/gpt-4o-mini``)."""
    import dspy

    with _dspy_lock:
        dspy.configure(lm=dspy.LM(model))


def run_dspy(program: Program, inputs: dict[str, Any]) -> dict[str, Any]:
    """Run ``dspy.Predict`` with the program's signature on DSPy's configured LM."""
    import dspy

    if dspy.settings.lm is None:
        raise BridgePoolError.make(
            ErrorCategory.PYTHON,
            "dspy_no_lm",
            "no DSPy LM configured: call dspy.configure(lm=...) in a handler module "
            "or set BRIDGEPOOL_WORKER_DSPY_MODEL",
            status=422,
        )
    prediction = _dspy_module(program)(**inputs)
    return {name: prediction.get(name) for name in program.outputs}


def _dspy_module(program: Program) -> Any:
    """The program's ``dspy.Predict`` with its signature, built once."""
    import dspy

    with _dspy_lock:
        if program.module is None:
            signature = dspy.Signature(program.signature, program.instructions or None)
            program.module = dspy.Predict(signature)
        return program.module
