"""Markers of the toolchain tests."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a longer variant of a check that also runs in a cheaper form by default "
                                       "(deselect with -m 'not slow')")
