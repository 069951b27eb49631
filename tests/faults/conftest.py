"""Session fixtures of the output-path fault tests: one workspace and one fake LLM for all of them."""

from __future__ import annotations

import pytest

from tests.faults import output_cases
from tests.faults.workspace import build_workspace


@pytest.fixture(scope="session")
def llm_url():
    from tests.sources.test_cupl_llm import FakeLLM

    server = FakeLLM()
    yield server.base_url
    server.close()


@pytest.fixture(scope="session")
def output_pristine(tmp_path_factory):
    """The fault workspace with a miniature dataset root (cars/) and eval results (results/)."""
    return output_cases.extend_workspace(build_workspace(tmp_path_factory.mktemp("outputs-pristine")))
