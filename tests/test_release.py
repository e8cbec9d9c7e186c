"""Release hygiene, checked offline from the files alone: the locks match requirements.txt, every
locked distribution has hashes, the project metadata agrees, the licence and changelog exist."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

import rpgrealtime
from tests.support.cluster import ROOT

TOOLING_MARKER = "# Tests and tooling"
FIX = "run scripts/lock and commit requirements.lock and requirements-runtime.lock"
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def normalize(name: str) -> str:
    """PEP 503: Twisted, twisted and TWISTED are one distribution; so are a_b, a-b and a.b."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Locked:
    versions: frozenset[str]
    hashed: bool
    direct: bool  # listed because the input file names it ("via -r requirements.txt")


def requirements(runtime_only: bool = False) -> dict[str, str]:
    """{normalized name: pinned version} from requirements.txt (exact pins only, by house rule)."""
    text = (ROOT / "requirements.txt").read_text()
    if runtime_only:
        text = text.split(TOOLING_MARKER)[0]
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = REQUIREMENT.match(line)
        assert match, f"requirements.txt: {line!r} is not pinned with == (every requirement is)"
        pins[normalize(match.group(1))] = match.group(3)
    return pins


def lock(filename: str) -> dict[str, Locked]:
    """{normalized name: what the lock holds for it}, read from uv's (or pip-compile's) output."""
    entries: dict[str, dict] = {}
    current: dict | None = None
    for line in (ROOT / filename).read_text().splitlines():
        if match := REQUIREMENT.match(line):
            current = entries.setdefault(normalize(match.group(1)), {"versions": set(), "hashes": 0, "direct": False})
            current["versions"].add(match.group(3))
        elif current is not None and "--hash=sha256:" in line:
            current["hashes"] += 1
        elif current is not None and re.search(r"(via|#)\s+-r requirements\.txt", line):
            current["direct"] = True
        elif line and not line.startswith((" ", "#")):
            raise AssertionError(f"{filename}: unexpected line {line!r}; {FIX}")
    return {
        name: Locked(frozenset(entry["versions"]), entry["hashes"] > 0, entry["direct"])
        for name, entry in entries.items()
    }


def mismatches(pins: dict[str, str], locked: dict[str, Locked]) -> list[str]:
    problems = []
    for name, version in sorted(pins.items()):
        if name not in locked:
            problems.append(f"{name}=={version} is not in the lock")
        elif version not in locked[name].versions:
            problems.append(f"{name}=={version} is locked as {', '.join(sorted(locked[name].versions))}")
    for name in sorted(n for n, entry in locked.items() if entry.direct and n not in pins):
        problems.append(f"{name} is locked as a requirement but no longer in requirements.txt")
    return problems


def test_the_lock_matches_requirements_txt():
    problems = mismatches(requirements(), lock("requirements.lock"))
    assert not problems, f"requirements.lock is out of date ({FIX}):\n" + "\n".join(problems)


def test_the_runtime_lock_matches_the_runtime_requirements_and_the_full_lock():
    runtime = lock("requirements-runtime.lock")
    problems = mismatches(requirements(runtime_only=True), runtime)
    full = lock("requirements.lock")
    problems += [
        f"{name} is locked as {sorted(entry.versions)} for the image but {sorted(full[name].versions)} for tests"
        for name, entry in sorted(runtime.items())
        if name not in full or not entry.versions <= full[name].versions
    ]
    assert not problems, f"requirements-runtime.lock is out of date ({FIX}):\n" + "\n".join(problems)


def test_every_locked_distribution_has_hashes():
    for filename in ("requirements.lock", "requirements-runtime.lock"):
        locked = lock(filename)
        assert len(locked) > len(requirements()) // 2, filename
        unhashed = sorted(name for name, entry in locked.items() if not entry.hashed)
        assert not unhashed, f"{filename}: no hashes for {unhashed}; {FIX}"


def test_the_lock_check_catches_a_changed_pin():
    locked = lock("requirements.lock")
    pins = requirements()
    assert mismatches({**pins, "django": "1.0"}, locked) == ["django==1.0 is locked as 5.2.19"]
    assert mismatches({**pins, "left-pad": "1.0"}, locked) == ["left-pad==1.0 is not in the lock"]
    dropped = {name: version for name, version in pins.items() if name != "daphne"}
    assert mismatches(dropped, locked) == ["daphne is locked as a requirement but no longer in requirements.txt"]


def test_setup_and_image_install_from_the_locks_with_hashes():
    setup = (ROOT / "scripts/_setup.sh").read_text()
    assert "--require-hashes -r requirements.lock" in setup
    assert "sha256sum requirements.lock" in setup  # re-installs when the lock changes
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements-runtime.lock" in dockerfile
    lock_script = (ROOT / "scripts/lock").read_text()
    # The locking tool is pinned in requirements.txt, not in the script.
    assert "--generate-hashes" in lock_script and not re.search(r"uv==\d", lock_script)
    assert "uv" in requirements()


def test_imported_libraries_are_pinned_directly():
    pins = requirements(runtime_only=True)
    for name in ("twisted", "autobahn", "asgiref", "prometheus-client", "django-redis", "python-json-logger"):
        assert name in pins, f"{name} is imported by the code: pin it in the runtime part of requirements.txt"


def test_pyproject_metadata_is_complete_and_matches_the_runtime_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for field in ("name", "version", "description", "readme", "license", "requires-python", "classifiers"):
        assert project.get(field), f"pyproject.toml [project] lacks {field}"
    assert project["license"] == "MIT" and (ROOT / project["readme"]).exists()
    declared = {}
    for dependency in project["dependencies"]:
        match = REQUIREMENT.match(dependency)
        assert match, f"pyproject.toml: {dependency!r} is not pinned with =="
        declared[normalize(match.group(1))] = match.group(3)
    assert declared == requirements(runtime_only=True), "pyproject.toml dependencies differ from requirements.txt"


def test_licence_and_changelog():
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "rpgrealtime contributors" in licence
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and "## [1.0.0] - " in changelog
    assert "protocol 1.1" in changelog and "protocol 1.0" in changelog


def test_the_release_number_is_the_same_in_the_code_and_the_project_metadata():
    metadata = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert metadata["version"] == rpgrealtime.__version__, "pyproject.toml and rpgrealtime/__init__.py disagree"
