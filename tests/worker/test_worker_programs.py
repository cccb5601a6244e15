"""Programs: signature parsing, the offline backend, and real DSPy with its dummy LM."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridgepool.errors import BridgePoolError
from bridgepool_worker.programs import (
    Program,
    ProgramDefinition,
    build_program,
    check_inputs,
    parse_signature,
    run_offline,
)

from .conftest import Workers


@pytest.mark.parametrize(
    ("signature", "inputs", "outputs"),
    [
        ("question -> answer", ["question"], ["answer"]),
        ("question, context -> answer", ["question", "context"], ["answer"]),
        ("q: str -> a: int, why", ["q"], ["a", "why"]),
    ],
)
def test_parse_signature(signature: str, inputs: list[str], outputs: list[str]) -> None:
    assert parse_signature(signature) == (inputs, outputs)


@pytest.mark.parametrize("bad", ["question", "a -> b -> c", "-> answer", "a b -> c", "1x -> y"])
def test_bad_signatures_are_400s(bad: str) -> None:
    with pytest.raises(BridgePoolError) as err:
        parse_signature(bad)
    assert err.value.status == 400


def program(signature: str = "question -> answer", instructions: str = "") -> Program:
    definition = ProgramDefinition(signature=signature, instructions=instructions)
    return build_program(definition, "p", "offline", now=0)


def test_offline_backend_is_deterministic_and_named_by_the_signature() -> None:
    p = program("question -> answer, confidence")
    out = run_offline(p, {"question": "2+2?"})
    assert set(out) == {"answer", "confidence"}
    assert out == run_offline(program("question -> answer, confidence"), {"question": "2+2?"})
    assert out != run_offline(p, {"question": "3+3?"})
    assert out != run_offline(
        program("question -> answer, confidence", "terse"), {"question": "2+2?"}
    )


def test_inputs_are_checked_against_the_signature() -> None:
    with pytest.raises(BridgePoolError) as err:
        check_inputs(program(), {"questoin": "typo"})
    assert err.value.info.context == {"missing": ["question"], "unknown": ["questoin"]}


def test_an_output_may_not_also_be_an_input() -> None:
    with pytest.raises(BridgePoolError):
        build_program(ProgramDefinition(inputs=["a"], outputs=["a"]), "p", "offline", now=0)


@pytest.mark.dspy
def test_dspy_backend_runs_predict_with_the_signature() -> None:
    dspy = pytest.importorskip("dspy")
    from dspy.utils import DummyLM

    from bridgepool_worker.programs import run_dspy

    p = build_program(
        ProgramDefinition(signature="question -> answer", backend="dspy"), "p", "offline", now=0
    )
    with dspy.context(lm=DummyLM([{"answer": "four"}])):
        assert run_dspy(p, {"question": "2+2?"}) == {"answer": "four"}


@pytest.mark.dspy
def test_dspy_programs_in_a_worker_process(workers: Workers, tmp_path: Path) -> None:
    pytest.importorskip("dspy")
    module = tmp_path / "dspy_setup.py"
    module.write_text(
        textwrap.dedent(
            """
            import dspy
            from dspy.utils import DummyLM

            from bridgepool_worker import command

            dspy.configure(lm=DummyLM([{"answer": "four"}, {"answer": "six"}]))


            @command
            def lm_name(ctx, args):
                return type(dspy.settings.lm).__name__
            """
        )
    )
    worker = workers.start(args=["--handlers", str(module)])
    sid = "dspy-session"
    created = worker.result(
        "create_program", {"signature": "question -> answer", "backend": "dspy"}, session_id=sid
    )
    assert created["backend"] == "dspy"
    run = {"program_id": created["program_id"], "inputs": {"question": "2+2?"}}
    assert worker.result("execute_program", run, session_id=sid)["outputs"] == {"answer": "four"}
    run["inputs"] = {"question": "3+3?"}
    assert worker.result("execute_program", run, session_id=sid)["outputs"] == {"answer": "six"}


@pytest.mark.dspy
def test_dspy_without_an_lm_is_a_clear_handler_error() -> None:
    dspy = pytest.importorskip("dspy")
    from bridgepool_worker.programs import run_dspy

    p = build_program(
        ProgramDefinition(signature="question -> answer", backend="dspy"), "p", "offline", now=0
    )
    with dspy.context(lm=None), pytest.raises(BridgePoolError) as err:
        run_dspy(p, {"question": "2+2?"})
    assert (err.value.status, err.value.info.type) == (422, "dspy_no_lm")
