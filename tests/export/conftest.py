import pytest
import torch

from mtsnn.toolchain.cli import main as mtsnn_main


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory):
    """A small MT-SNN trained for 2 epochs on the digits (a few seconds), exported at 8 bits."""
    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("trained")
    path = folder / "model.pt"
    code = mtsnn_main(["train", "--arch", "8C3p1-P2-12C3p1-P2-32", "--epochs", "2", "--no-progress",
                       "--batch-size", "64", "-o", str(path)])
    assert code == 0 and path.is_file()
    return path
