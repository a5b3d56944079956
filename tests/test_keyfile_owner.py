"""Secret files owned by another user are refused, whatever their mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import KeyFileError
from gateway.keyfile import read_private_file, write_private_file


def test_a_secret_file_owned_by_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "k.key"
    write_private_file(path, b"canary-Zq81")
    assert read_private_file(path) == b"canary-Zq81"
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(path).st_uid + 1)
    with pytest.raises(KeyFileError, match=r"owned by uid \d+, not by the user running the gateway") as refused:
        read_private_file(path)
    assert "canary-Zq81" not in str(refused.value)
