"""The argument parser of every ``destiny`` command: argparse, plus a suggestion for a flag it
does not know.

DSSTNE spells its flags with one dash (``-e 10``, ``-alpha 0.1``); a DSSTNE user types
``-epochs 1``, which argparse reads as ``-e pochs`` ("invalid int value: 'pochs'"), and a
typo such as ``--aplha`` was reported by the top-level parser with no hint. Here:

* a single-dash word that is one of the command's long flags (``-epochs``) is refused with
  "flags spelt out take two dashes: did you mean --epochs?" — DSSTNE's own single-dash flags
  (``-alpha``, ``-lambda``, …) are registered as such and keep working;
* a single-dash word that is neither a flag nor a short flag with a valid value attached
  (``-aplha``, ``-epcohs``; not ``-b256`` or ``-dinput``) and an unknown ``--flag`` get the
  closest of the command's flags (``difflib.get_close_matches``), from the command's own
  parser (its usage, exit status 2); an unknown command gets the closest command.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from destiny.data.convert import _is_number  # a command-line token that is a number (a negative value, not a flag)

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9-]+\Z")


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose unknown flags get "did you mean …?" (the commands'
    parsers are of this class too: ``add_subparsers`` makes its parent's)."""

    def parse_known_args(self, args=None, namespace=None):
        if args is None:
            args = sys.argv[1:]
        if self._has_commands():
            self._check_command(list(args))
        else:
            self._check_flags(list(args))
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and not self._has_commands():  # a command's parser: it knows every flag of the command
            self._refuse(extras)
        return namespace, extras

    # -- checks -------------------------------------------------------------------------------

    def _has_commands(self) -> bool:
        return self._subparsers is not None

    def _check_command(self, args: list[str]) -> None:
        """An unknown command gets the closest one ('trian': did you mean train?)."""
        word = next((a for a in args if not a.startswith("-")), None)
        commands = self._subparsers._group_actions[0].choices
        if word is not None and word not in commands:
            close = difflib.get_close_matches(word, list(commands), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else "the commands are " + ", ".join(commands)
            self.error(f"unknown command {word!r}: {hint}")

    def _long_flags(self) -> dict[str, str]:
        """Name without dashes → the flag to suggest (itself, or the ``--`` spelling of a
        single-dash one), over the visible flags."""
        names: dict[str, str] = {}
        for action in self._actions:
            if action.help == argparse.SUPPRESS or not action.option_strings:
                continue
            longs = [s for s in action.option_strings if s.startswith("--")]
            for flag in action.option_strings:
                name = flag.lstrip("-")
                if len(name) > 1:
                    names.setdefault(name, flag if flag.startswith("--") or not longs else longs[0])
        return names

    def _suggest(self, name: str) -> str | None:
        flags = self._long_flags()
        close = difflib.get_close_matches(name, list(flags), n=1, cutoff=0.6)
        return flags[close[0]] if close else None

    def _check_flags(self, args: list[str]) -> None:
        for token in args:
            if token == "--":
                return
            if not token.startswith("-") or len(token) <= 2:
                continue
            flag = token.split("=", 1)[0]
            if token.startswith("--"):  # unknown even as an abbreviation: said before a missing required flag
                if not any(option.startswith(flag) for option in self._option_string_actions):
                    self._refuse([flag])
                continue
            if flag in self._option_string_actions:  # -alpha: DSSTNE's spelling, registered
                continue
            name = flag[1:]
            if "--" + name in self._option_string_actions:
                self.error(f"{token}: flags spelt out take two dashes: did you mean --{name}?")
            if _WORD.match(name) and not self._valid_short(token):
                suggestion = self._suggest(name)
                if suggestion is not None:
                    self.error(f"unrecognized argument {flag}: did you mean {suggestion}?")

    def _valid_short(self, token: str) -> bool:
        """Whether ``token`` reads as a short flag with its value attached (``-b256``)."""
        action = self._option_string_actions.get(token[:2])
        if action is None or action.nargs == 0:  # unknown, or a switch (combined switches: argparse's call)
            return action is not None
        value = token[2:].removeprefix("=")
        if action.choices is not None and value not in action.choices:
            return False
        if callable(action.type):
            try:
                action.type(value)
            except (TypeError, ValueError, argparse.ArgumentTypeError):
                return False
        return True

    def _refuse(self, extras: list[str]) -> None:
        for token in extras:
            if token.startswith("-") and len(token) > 1 and not _is_number(token):
                flag = token.split("=", 1)[0]
                suggestion = self._suggest(flag.lstrip("-"))
                hint = f": did you mean {suggestion}?" if suggestion else f" (see {self.prog} -h for the flags)"
                self.error(f"unrecognized argument {flag}{hint}")
        self.error(f"unrecognized arguments: {' '.join(extras)} (see {self.prog} -h)")


