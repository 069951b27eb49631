import os

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Ray instances the tests start (and their drivers) serve only this machine: every service on loopback.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

# Every cache a test could write or read: susx's own (susx_cli.paths.cache_dir reads the first two),
# Hugging Face's and torch's. Tests never see the user's caches, nor each other's.
CACHE_VARIABLES = ("SUSX_CACHE_DIR", "XDG_CACHE_HOME", "HF_HOME", "TORCH_HOME")


def _point_caches_at(monkeypatch: pytest.MonkeyPatch, root) -> None:
    for name in CACHE_VARIABLES:
        monkeypatch.setenv(name, str(root / name.lower()))


@pytest.fixture(scope="session", autouse=True)
def _session_caches(tmp_path_factory):
    """Caches for the module- and session-scoped fixtures (they start before any one test's)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _point_caches_at(monkeypatch, tmp_path_factory.mktemp("caches"))
        yield


@pytest.fixture(autouse=True)
def _test_caches(monkeypatch, tmp_path_factory):
    """Fresh, empty caches for each test (subprocesses it starts inherit them)."""
    _point_caches_at(monkeypatch, tmp_path_factory.mktemp("caches"))
