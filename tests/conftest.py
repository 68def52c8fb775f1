"""Test-wide settings: hypothesis explores new examples locally, and is derandomized in CI (CI=true)
so a submission's result does not depend on the examples drawn that day."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
