"""A profile with one recipe replaced by an edited, unsaved text (a draft).

An administrator tuning a recipe sees what the edit would change before
anyone saves it: the profiles directory is copied into a temporary directory,
the edited text replaces the recipe file there, and the copy is loaded like
the real one (same parser, same errors with file and line). The copy is
removed before the answer is sent; the profiles on disk are never touched.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from dicom_service.deidentify import Profile
from dicom_service.deidentify.profiles import ProfileError, load_profiles
from dicom_service.deidentify.recipe import RecipeError
from dicom_service.errors import NotFound
from dicom_service.profiles_admin.validation import MAX_RECIPE_BYTES


class DraftInvalid(ValueError):
    """The draft does not load; the message is ``file:line: reason``."""


def draft_profile(profiles_dir: Path, name: str, recipe_file: str, text: str) -> Profile:
    """Profile ``name`` as it would load with ``recipe_file`` replaced by ``text``.

    Raises:
        NotFound: no such profile, or the profile has no recipe ``recipe_file``.
        DraftInvalid: the edited profile does not load.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_RECIPE_BYTES:
        raise ValueError(f"a recipe must not be larger than {MAX_RECIPE_BYTES} bytes")
    current = load_profiles(profiles_dir)
    try:
        profile = current.get(name)
    except KeyError:
        raise NotFound(f"no profile named {name!r}") from None
    if recipe_file not in profile.recipes:
        raise NotFound(f"profile {name!r} has no recipe {recipe_file!r}; its recipes: "
                       + ", ".join(profile.recipes))
    with tempfile.TemporaryDirectory(prefix="dicom-service-draft-") as tmp:
        copy = Path(tmp) / "profiles"
        shutil.copytree(profiles_dir, copy)
        (copy / recipe_file).write_text(text, encoding="utf-8")
        try:
            return load_profiles(copy).get(name)
        except (ProfileError, RecipeError) as exc:
            raise DraftInvalid(str(exc)) from None
