"""How a component reads its start-up settings: command-line flags over
``<PREFIX><SETTING>`` environment variables over defaults, validated by one
pydantic model.

A setting has one name in three spellings: the model field
``shutdown_timeout``, the flag ``--shutdown-timeout`` (where it has one) and
the variable ``BRIDGEPOOL_ROUTER_SHUTDOWN_TIMEOUT``. The field's description
and default are the flag's help. A bad value is reported naming the flag or
the variable it came from, so a process that cannot start says why in its
first line.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic.fields import FieldInfo

from bridgepool.errors import problem_message

Config = TypeVar("Config", bound=BaseModel)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# A log level setting, in any case (``INFO`` as the Python logging names it, or ``info``).
LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)]


class ConfigError(Exception):
    """A setting could not be used; the message names where it came from."""


@dataclass(frozen=True)
class Items:
    """Marks a list setting, ``Annotated[tuple[str, ...], Items(",")]``: its
    variable holds the items separated by ``separator`` (None: by whitespace)."""

    separator: str | None = ","


class ConfigSources(Generic[Config]):
    """The flags, variables and defaults of one component's ``Config`` model.

    ``flags`` names the fields that have a flag, with extra argparse options
    for it (``action``, ``nargs``, ``metavar``); every field has a variable,
    ``env_prefix`` + its name in capitals unless ``env_names`` says otherwise.
    """

    def __init__(
        self,
        model: type[Config],
        *,
        prog: str,
        description: str,
        env_prefix: str,
        flags: Mapping[str, Mapping[str, Any]],
        env_names: Mapping[str, str] | None = None,
    ) -> None:
        unknown = (set(flags) | set(env_names or {})) - set(model.model_fields)
        if unknown:
            raise ValueError(f"{model.__name__} has no fields {sorted(unknown)}")
        self.model = model
        self.prog = prog
        self.description = description
        self.env_prefix = env_prefix
        self.flags = flags
        self.env_names = env_names or {}

    def variable(self, name: str) -> str:
        return self.env_names.get(name, self.env_prefix + name.upper())

    @staticmethod
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    def _help(self, name: str, field: FieldInfo, *, variable: bool) -> str:
        notes = [] if field.default_factory else [f"default: {_shown(field.default)}"]
        if variable:
            notes.append(self.variable(name))
        described = field.description or name.replace("_", " ")
        return f"{described} ({'; '.join(notes)})" if notes else described

    def parser(self) -> argparse.ArgumentParser:
        """The command line; ``--help`` shows every flag with its default and
        variable, and lists the settings that only have a variable."""
        epilog = f"Flags win over their {self.env_prefix}* variables."
        env_only = [
            f"  {self.variable(name)}: {self._help(name, field, variable=False)}"
            for name, field in self.model.model_fields.items()
            if name not in self.flags
        ]
        if env_only:
            epilog += " Settings without a flag:\n" + "\n".join(env_only)
        parser = argparse.ArgumentParser(
            prog=self.prog,
            description=self.description,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for name, options in self.flags.items():
            field = self.model.model_fields[name]
            help_text = self._help(name, field, variable=True).replace("%", "%%")
            # default None: "not given", so the variable or the model's default applies.
            parser.add_argument(self.flag(name), dest=name, default=None, help=help_text, **options)
        return parser

    def load(self, argv: Sequence[str], environ: Mapping[str, str]) -> Config:
        """The settings from ``argv`` over ``environ`` over the defaults.

        A malformed command line ends the process as argparse does (usage,
        exit 2; ``--help`` exit 0); a bad value raises :class:`ConfigError`.
        """
        given = vars(self.parser().parse_args(list(argv)))
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for name, field in self.model.model_fields.items():
            variable = self.variable(name)
            if given.get(name) is not None:
                values[name], origin[name] = given[name], self.flag(name)
            elif variable in environ:
                values[name], origin[name] = _from_env(field, environ[variable]), variable
        try:
            return self.model.model_validate(values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                name = str(err["loc"][0]) if err["loc"] else "?"
                problems.append(
                    f"{origin.get(name, name)}={values.get(name)!r}: {problem_message(err['msg'])}"
                )
            raise ConfigError("bad setting: " + "; ".join(problems)) from None


def _shown(default: Any) -> str:
    if default is None or default == ():
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def _from_env(field: FieldInfo, raw: str) -> Any:
    """A variable's text as the model reads it: list settings split into their
    items, an empty variable of a setting that is off by default as None."""
    items = next((m for m in field.metadata if isinstance(m, Items)), None)
    if items is not None:
        return tuple(part.strip() for part in raw.split(items.separator) if part.strip())
    if raw.strip() == "" and field.default is None:
        return None
    return raw.strip()
