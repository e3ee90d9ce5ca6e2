"""Run options: the typed parameters a pipeline declares next to its boolean flags.

A pipeline class describes each option in its ``options`` attribute (see ``docs/pipelines.rst``).
This module turns those descriptions into :class:`OptionSpec` objects, says what is wrong with a
description (for the registry and ``manage.py check``), and turns a value from any channel (a form
field, a JSON body, a command-line ``NAME=VALUE``) into the typed value passed to ``do_pipeline``,
or into one message naming the option and what it accepts. Every channel goes through
:func:`OptionSpec.clean`, so the rules and the words are the same everywhere.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

OPTION_TYPES = ('int', 'float', 'choice', 'text')
#: Keys an option description may have; anything else is most likely a typo and is reported.
SPEC_KEYS = frozenset({'type', 'default', 'min', 'max', 'step', 'choices', 'max_length', 'long_name', 'required',
                       'help'})
#: Longest text option accepted when a description gives no ``max_length``.
DEFAULT_TEXT_LENGTH = 2000
#: Longest excerpt of a refused value quoted back in a message.
QUOTE_LENGTH = 40


class OptionError(ValueError):
    """A value an option does not accept; the message names the option and what it accepts."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def quote(value: Any) -> str:
    """``repr`` of a refused value, cut to a bounded excerpt: a message never echoes a huge input."""
    text = repr(value)
    return text if len(text) <= QUOTE_LENGTH else f'{text[:QUOTE_LENGTH]}…'


def shown(value: Any) -> str:
    """A refused option value as the user typed it, whichever channel it came by.

    Text is shown as it is and anything else as JSON, so ``"61"`` from a form or the command line
    and ``61`` from a JSON body give the same message.
    """
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= QUOTE_LENGTH else f'{text[:QUOTE_LENGTH]}…'


def quote_name(name: Any) -> str:
    """A name the user typed, in double quotes, cut to a bounded excerpt."""
    text = str(name)
    return f'"{text}"' if len(text) <= QUOTE_LENGTH else f'"{text[:QUOTE_LENGTH]}…"'


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class OptionSpec:
    """One option as a pipeline declares it, with the site's default applied."""

    name: str
    type: str
    default: Any = None
    long_name: str = ''
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    max_length: int = DEFAULT_TEXT_LENGTH
    help: str = ''

    @classmethod
    def from_declaration(cls, name: str, declaration: dict[str, Any]) -> OptionSpec:
        """Read a declaration already checked by :func:`declaration_problems`."""
        return cls(
            name=name,
            type=declaration['type'],
            default=declaration.get('default'),
            long_name=declaration.get('long_name') or name,
            # an option whose default is empty may be left empty; any other must have a value
            required=declaration.get('required', declaration.get('default') not in (None, '')),
            minimum=declaration.get('min'),
            maximum=declaration.get('max'),
            step=declaration.get('step'),
            choices=tuple(declaration.get('choices') or ()),
            max_length=declaration.get('max_length', DEFAULT_TEXT_LENGTH),
            help=declaration.get('help', ''),
        )

    @property
    def label(self) -> str:
        return self.long_name or self.name

    @property
    def empty_value(self) -> Any:
        """What ``do_pipeline`` receives for an optional option left empty."""
        return '' if self.type in ('text', 'choice') else None

    def accepts(self) -> str:
        """What the option accepts, in words, for messages and help texts."""
        if self.type in ('int', 'float'):
            kind = 'a whole number' if self.type == 'int' else 'a number'
            if self.minimum is not None and self.maximum is not None:
                return f'{kind} from {self.minimum:g} to {self.maximum:g}'
            if self.minimum is not None:
                return f'{kind} of at least {self.minimum:g}'
            if self.maximum is not None:
                return f'{kind} of at most {self.maximum:g}'
            return kind
        if self.type == 'choice':
            return 'one of ' + ', '.join(f'"{choice}"' for choice in self.choices)
        return f'text of at most {self.max_length} characters'

    def clean(self, value: Any) -> Any:
        """The typed value for ``value`` as sent by any channel; :class:`OptionError` when it is not accepted.

        Numbers may arrive as JSON numbers or as text (a form field, the command line); ``None`` or an
        empty string means "no value", allowed only for an option that is not required.
        """
        if value is None or (isinstance(value, str) and not value.strip() and self.type != 'text'):
            if self.required:
                raise OptionError(self.name, f'Option "{self.name}" needs a value: {self.accepts()}.')
            return self.empty_value
        if self.type in ('int', 'float'):
            return self._clean_number(value)
        if self.type == 'choice':
            for choice in self.choices:
                if value == choice or (isinstance(value, str) and value == str(choice)):
                    return choice
            raise self._refuse(value)
        if not isinstance(value, str):
            raise OptionError(self.name, f'Option "{self.name}" must be {self.accepts()}, not {shown(value)}.')
        if len(value) > self.max_length:
            raise OptionError(self.name, f'Option "{self.name}" must be {self.accepts()}; '
                                         f'got {len(value)} characters.')
        if self.required and not value.strip():
            raise OptionError(self.name, f'Option "{self.name}" needs a value: {self.accepts()}.')
        return value

    def _clean_number(self, value: Any) -> int | float:
        number: Any = value
        if isinstance(value, str):
            text = value.strip()
            try:
                number = int(text) if self.type == 'int' else float(text)
            except ValueError:
                # "5.0" is a whole number written as a decimal: accept it for an int
                try:
                    number = float(text)
                except ValueError:
                    raise self._refuse(value) from None
        if not _is_number(number):
            raise self._refuse(value)
        if self.type == 'int':
            if float(number) != int(number):
                raise self._refuse(value)
            number = int(number)
        else:
            number = float(number)
        if (self.minimum is not None and number < self.minimum) or (
            self.maximum is not None and number > self.maximum
        ):
            raise self._refuse(value)
        return number

    def _refuse(self, value: Any) -> OptionError:
        return OptionError(self.name, f'Option "{self.name}" must be {self.accepts()}, not {shown(value)}.')

    def describe(self) -> dict[str, Any]:
        """The option as the API and the form describe it."""
        return {
            'name': self.name, 'type': self.type, 'default': self.default, 'long_name': self.label,
            'required': self.required, 'min': self.minimum, 'max': self.maximum, 'step': self.step,
            'choices': list(self.choices), 'max_length': self.max_length if self.type == 'text' else None,
            'help': self.help,
        }


def declaration_problems(options: object, flag_names: set[str]) -> list[str]:
    """What is wrong with a class's ``options`` attribute, as sentences; empty when nothing is."""
    if options is None:
        return []
    if not isinstance(options, dict):
        return ['options must be a dict mapping option names to {"type": ..., "default": ..., "long_name": ...}']
    problems = []
    for name, declaration in options.items():
        if not isinstance(name, str) or not name.isidentifier():
            problems.append(f'option name {name!r} must be a Python identifier (letters, digits, underscores)')
            continue
        if name in flag_names:
            problems.append(f'option {name!r} has the name of a flag; flags and options share one namespace')
        if not isinstance(declaration, dict):
            problems.append(f'option {name!r} must be a dict with at least "type"')
            continue
        problems.extend(_declaration_problems(name, declaration))
    return problems


def _declaration_problems(name: str, declaration: dict[str, Any]) -> list[str]:
    unknown = sorted(str(key) for key in set(declaration) - SPEC_KEYS)
    if unknown:
        return [f'option {name!r} has unknown key(s) {", ".join(unknown)}; known keys: {", ".join(sorted(SPEC_KEYS))}']
    kind = declaration.get('type')
    if kind not in OPTION_TYPES:
        return [f'option {name!r} needs a "type", one of {", ".join(OPTION_TYPES)}; got {kind!r}']
    problems = []
    for key in ('min', 'max', 'step'):
        if key in declaration and declaration[key] is not None and not _is_number(declaration[key]):
            problems.append(f'option {name!r} has a "{key}" that is not a number')
    if kind in ('int', 'float') and _is_number(declaration.get('min')) and _is_number(declaration.get('max')) \
            and declaration['min'] > declaration['max']:
        problems.append(f'option {name!r} has "min" larger than "max"')
    if kind == 'choice':
        choices = declaration.get('choices')
        if not isinstance(choices, (list, tuple)) or not choices or not all(
            isinstance(choice, (str, int, float)) and not isinstance(choice, bool) for choice in choices
        ):
            problems.append(f'option {name!r} of type "choice" needs a non-empty list of "choices" '
                            '(strings or numbers)')
    if kind == 'text' and 'max_length' in declaration and not (
        isinstance(declaration['max_length'], int) and not isinstance(declaration['max_length'], bool)
        and declaration['max_length'] > 0
    ):
        problems.append(f'option {name!r} has a "max_length" that is not a positive whole number')
    for key in ('long_name', 'help'):
        if not isinstance(declaration.get(key, ''), str):
            problems.append(f'option {name!r} has a "{key}" that is not a string')
    if not isinstance(declaration.get('required', True), bool):
        problems.append(f'option {name!r} has a "required" that is not True or False')
    if problems:
        return problems
    spec = OptionSpec.from_declaration(name, declaration)
    return default_problems(spec, declaration.get('default'))


def default_problems(spec: OptionSpec, default: Any) -> list[str]:
    """A default the option itself would refuse is a mistake of the declaration (or of a site override)."""
    if default is None:
        return []  # no default: the field starts empty (and a required option must then be filled in)
    try:
        spec.clean(default)
    except OptionError as exc:
        return [f'the default of option {spec.name!r} is not accepted by the option itself: {exc.message}']
    return []
