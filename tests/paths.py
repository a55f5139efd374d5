"""Where the tests find data that lives outside the repository."""

from pathlib import Path

# The shared folder lies beside the repository's own folder, on a developer's machine and in CI.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GSM8K = SHARED / "data" / "routellm-gsm8k"
# The repository itself.
ROOT = Path(__file__).resolve().parents[1]
