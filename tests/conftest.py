"""Test-wide settings: hypothesis explores new examples locally, and is derandomized in CI (CI=true)
so a submission's result does not depend on the examples drawn that day."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory):
    """A small MT-SNN trained for 2 epochs on the digits (a few seconds), saved as model.pt."""
    import torch

    from mtsnn.cli import main as mtsnn_main

    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("trained")
    path = folder / "model.pt"
    code = mtsnn_main(["train", "--arch", "8C3p1-P2-12C3p1-P2-32", "--epochs", "2", "--no-progress",
                       "--batch-size", "64", "-o", str(path)])
    assert code == 0 and path.is_file()
    return path
