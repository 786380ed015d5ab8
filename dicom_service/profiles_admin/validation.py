"""Validate a recipe text as the service would load it, reporting every error found.

The parser (``deidentify/recipe.py``) stops at the first invalid line. To show
an administrator more than one problem per round trip, the line at fault is
blanked (so line numbers stay) and the text parsed again, up to
:data:`MAX_ERRORS` times; a repeat of the same reason on the next line means
the first error knocked on (a missing ``FORMAT dicom``, an unsupported
section), and the search stops there. The text is also compiled on its own
(duplicate tag rules, literals that do not fit the VR).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dicom_service.deidentify import RecipeError
from dicom_service.deidentify.plan import compile_plan
from dicom_service.deidentify.recipe import parse_recipe

__all__ = ["MAX_ERRORS", "MAX_RECIPE_BYTES", "RecipeProblem", "validate_recipe_text"]

MAX_ERRORS = 50
MAX_RECIPE_BYTES = 1_048_576
_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$")


@dataclass(frozen=True)
class RecipeProblem:
    """One error: ``file:line: reason`` (line 0: the whole file)."""

    file: str
    line: int
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "reason": self.reason,
                "message": f"{self.file}:{self.line}: {self.reason}"}


def check_file_name(name: str) -> str:
    """A recipe file name as given by an administrator, checked for display."""
    if not _FILE_NAME_RE.match(name) or ".." in name:
        raise ValueError('Argument "filename" must be 1-128 of letters, digits, '
                         "'_', '.', '-' or '/', without '..'.")
    return name


def validate_recipe_text(text: str, file: str = "recipe.dicom") -> list[RecipeProblem]:
    """Return the problems of recipe ``text`` (empty: it loads), named ``file``.

    Raises:
        ValueError: the text is larger than :data:`MAX_RECIPE_BYTES`.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_RECIPE_BYTES:
        raise ValueError(f"a recipe must not be larger than {MAX_RECIPE_BYTES} bytes")
    lines = text.splitlines()
    problems: list[RecipeProblem] = []
    while len(problems) < MAX_ERRORS:
        try:
            compile_plan([parse_recipe("\n".join(lines), file)])
        except RecipeError as exc:
            problem = RecipeProblem(file, exc.line, exc.reason)
            previous = problems[-1] if problems else None
            if previous is not None and previous.reason == problem.reason:
                break  # the same reason line after line: a knock-on of the one before
            problems.append(problem)
            if exc.line <= 0 or exc.line > len(lines):
                break
            lines[exc.line - 1] = ""
            continue
        break
    return problems
