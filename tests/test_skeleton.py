import importlib

import pytest


@pytest.mark.parametrize("package", ["atom_actors", "eventstore", "api", "replay"])
def test_package_imports(package: str) -> None:
    assert importlib.import_module(package).__name__ == package
