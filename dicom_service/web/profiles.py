"""Administrator API for de-identification profiles: ``/api/profiles``.

List and show the profiles on disk, validate a recipe text, dry-run a profile
on one instance (uploaded, or a synthetic sample), run the leak check on the
sample set, and activate a version. Every route is for the administrator
(``AdminDep``).

A dry run returns original values: to the administrator in this response
only. The upload is read into memory (``web/upload.py``), de-identified with a
throwaway key, and dropped; nothing of it is logged or written.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dicom_service.app import Services
from dicom_service.deidentify import Profile
from dicom_service.errors import NotFound
from dicom_service.profiles_admin import activation, catalogue
from dicom_service.profiles_admin.drafts import DraftInvalid, draft_profile
from dicom_service.profiles_admin.dryrun import WouldRefuse, dry_run
from dicom_service.profiles_admin.leakcheck import leak_check
from dicom_service.profiles_admin.validation import check_file_name, validate_recipe_text
from dicom_service.web.deps import ServicesDep
from dicom_service.web.policy import AdminDep
from dicom_service.web.problems import problem
from dicom_service.web.upload import BadUpload, UploadTooLarge, read_upload

router = APIRouter(prefix="/api/profiles", tags=["profiles"])

MAX_UPLOAD_BYTES = 128 * 1_048_576
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ProfileName = Annotated[str, PathParam(pattern=NAME_PATTERN, description="profile name")]

_leak_check_running = threading.Lock()
_samples_lock = threading.Lock()
_samples: list[dict[str, str]] = []


class ActivationIn(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=r"^[0-9A-Za-z.+-]{1,16}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{16,64}$",
                        description="the hash shown by GET /api/profiles (at least 16 hex digits)")


def _profiles_dir(services: Services) -> Path:
    directory: Path = services.settings.profiles_dir
    return directory


@router.get("")
def list_profiles(services: ServicesDep, _: AdminDep) -> dict[str, object]:
    """Every profile on disk (version, hash, options, active or not) and the
    activation history, newest first."""
    return catalogue.snapshot(services.db, _profiles_dir(services)).to_json()


@router.get("/activations")
def list_activations(services: ServicesDep, _: AdminDep,
                     limit: Annotated[int, Query(ge=1, le=10_000)] = 100
                     ) -> list[dict[str, object]]:
    return [a.to_json() for a in activation.history(services.db, limit=limit)]


@router.post("/activations", status_code=201)
def activate(body: ActivationIn, services: ServicesDep, actor: AdminDep) -> dict[str, object]:
    """Make a profile version the one new instances get. ``version`` and
    ``sha256`` must be what is on disk (409 otherwise); a profile that does not
    load cannot be activated (409). Every listener applies it to the next
    instance it receives after about a second."""
    record, profile = activation.activate(
        services.db, _profiles_dir(services), body.name, version=body.version,
        sha256=body.sha256, actor=actor)
    services.active.invalidate()
    return {"activation": record.to_json(),
            "profile": {"name": profile.name, "version": profile.version,
                        "sha256": profile.sha256}}


@router.get("/samples")
def list_samples(_: AdminDep) -> list[dict[str, str]]:
    """The synthetic sample instances a dry run can name (``sample=LABEL`` or ``PATH``)."""
    with _samples_lock:
        if not _samples:
            from sample_data.generate import generate

            with tempfile.TemporaryDirectory(prefix="dicom-service-samples-") as tmp:
                manifest = generate(Path(tmp), ct_slices=100)
            _samples.extend({"label": f["label"], "path": f["path"], "modality": f["modality"]}
                            for f in manifest.files)
        return list(_samples)


@router.post("/validate")
def validate(services: ServicesDep, _: AdminDep,
             text: Annotated[str, Body(media_type="text/plain", max_length=1_048_576)],
             filename: Annotated[str, Query(max_length=128)] = "recipe.dicom",
             ) -> dict[str, object]:
    """Validate a recipe text (``text/plain`` body) as the service would load
    it: ``ok``, or every error found with its line (``file:line: reason``,
    ``file`` as given in ``filename``)."""
    problems = validate_recipe_text(text, check_file_name(filename))
    return {"ok": not problems, "file": filename,
            "errors": [p.to_json() for p in sorted(problems, key=lambda p: p.line)]}


def _sample_bytes(name: str) -> tuple[bytes, str]:
    from sample_data.generate import generate

    with tempfile.TemporaryDirectory(prefix="dicom-service-sample-") as tmp:
        manifest = generate(Path(tmp), ct_slices=100)
        for entry in manifest.files:
            if name in (entry["label"], entry["path"]):
                return (Path(tmp) / entry["path"]).read_bytes(), entry["path"]
        labels = sorted({f["label"] for f in manifest.files})
    raise NotFound(f"no sample instance {name!r}; labels: {', '.join(labels)}")


@router.get("/{name}")
def show_profile(name: ProfileName, services: ServicesDep, _: AdminDep) -> dict[str, object]:
    """One profile: version, hash, options, activation history and its recipe texts."""
    directory = _profiles_dir(services)
    snap = catalogue.snapshot(services.db, directory)
    try:
        profile = snap.profiles.get(name)
    except KeyError:
        raise NotFound(f"no profile named {name!r}") from None
    out = catalogue.profile_json(profile, snap.active, snap.history)
    out["recipe_texts"] = catalogue.recipe_texts(profile, directory)
    return out


@router.post("/{name}/dry-run", response_model=None)
async def dry_run_profile(
    name: ProfileName, request: Request, services: ServicesDep, _: AdminDep,
    sample: Annotated[str | None, Query(max_length=128, description=(
        "a sample instance's label or path (GET /api/profiles/samples) instead of an upload"
    ))] = None,
    changes_only: bool = False,
) -> dict[str, object] | JSONResponse:
    """De-identify one instance with profile ``name`` and show the difference.

    The instance is uploaded (``multipart/form-data`` field ``file``, or an
    ``application/dicom`` body) or named with ``sample``. The answer lists
    every element (``changes_only``: only those that changed) with tag,
    keyword, VR, action (kept, replaced, blanked, removed, added), value
    before and after and the deciding recipe line, sequences flattened into
    paths; and a PNG preview of the first frame with the cleaned pixel regions
    outlined. Original values appear in this response only.
    """
    try:
        data = await read_upload(request, MAX_UPLOAD_BYTES)
    except UploadTooLarge:
        return problem(413, "Content Too Large",
                       f"an instance for a dry run must not exceed {MAX_UPLOAD_BYTES} bytes")
    except BadUpload as exc:
        return problem(415, "Unsupported Media Type", str(exc))
    directory = _profiles_dir(services)
    profiles = activation.load_for_activation(directory)
    try:
        profile = profiles.get(name)
    except KeyError:
        raise NotFound(f"no profile named {name!r}") from None
    if (data is None) == (sample is None):
        return problem(400, "Bad Request",
                       "give either an uploaded instance or 'sample', not both or neither")
    source: dict[str, object]
    if data is None:
        instance, path = await run_in_threadpool(_sample_bytes, str(sample))
        source = {"sample": sample, "path": path, "bytes": len(instance)}
    else:
        instance = data
        source = {"upload": True, "bytes": len(instance)}
    del data
    return await _dry_run_answer(profile, instance, source, changes_only)


async def _dry_run_answer(profile: Profile, instance: bytes, source: dict[str, object],
                          changes_only: bool) -> dict[str, object] | JSONResponse:
    try:
        result = await run_in_threadpool(dry_run, profile, instance)
    except WouldRefuse as exc:
        return problem(422, "Unprocessable Content", str(exc))
    del instance
    rows = [r for r in result.rows if not changes_only or r.action != "kept"]
    return {
        "profile": {"name": profile.name, "version": profile.version, "sha256": profile.sha256},
        "source": source,
        "pseudonym": result.pseudonym,
        "note": ("a dry run under a throwaway key: nothing was stored or logged; original "
                 "values are shown in this response only"),
        "counts": result.counts(),
        "diff": [r.to_json() for r in rows],
        "pixels": result.pixels.to_json(),
        "preview": result.preview.to_json(),
    }


class DraftIn(BaseModel):
    file: str = Field(max_length=128, description="the recipe file of the profile being edited")
    text: str = Field(max_length=1_048_576, description="the edited recipe text")
    sample: str = Field(max_length=128, description="a sample instance's label or path")
    changes_only: bool = False


@router.post("/{name}/draft-dry-run", response_model=None)
async def draft_dry_run(name: ProfileName, body: DraftIn, services: ServicesDep,
                        _: AdminDep) -> dict[str, object] | JSONResponse:
    """Dry-run profile ``name`` with one recipe replaced by an edited, unsaved
    text, on a sample instance: what the edit would change, before anyone
    saves it. A draft that does not load answers 422 with ``file:line: reason``."""
    try:
        profile = await run_in_threadpool(draft_profile, _profiles_dir(services), name,
                                          check_file_name(body.file), body.text)
    except DraftInvalid as exc:
        return problem(422, "Unprocessable Content", str(exc))
    instance, path = await run_in_threadpool(_sample_bytes, body.sample)
    source: dict[str, object] = {"sample": body.sample, "path": path, "bytes": len(instance),
                                 "draft": body.file}
    return await _dry_run_answer(profile, instance, source, body.changes_only)


@router.post("/{name}/leak-check", response_model=None)
def leak_check_profile(name: ProfileName, services: ServicesDep,
                       _: AdminDep) -> dict[str, object] | JSONResponse:
    """Run profile ``name`` over the synthetic sample set (generated into a
    temporary directory that is always removed) and report, per planted fake
    identifier, whether and where it survived. One at a time (429 while one runs)."""
    profiles = activation.load_for_activation(_profiles_dir(services))
    try:
        profile = profiles.get(name)
    except KeyError:
        raise NotFound(f"no profile named {name!r}") from None
    if not _leak_check_running.acquire(blocking=False):
        return problem(429, "Too Many Requests", "a leak check is already running")
    try:
        return leak_check(profile).to_json()
    finally:
        _leak_check_running.release()
