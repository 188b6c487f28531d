"""scripts/token.sh as users call it: from any folder, with any key name, with and without a server.

The script is copied into a folder laid out like the repository, with a key_file.json shaped as
TorchServe 0.12 writes it (`management` and `inference` with a key and an expiry, `API` with a
key), and run from another folder.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

KEYS = {"management": {"key": "m-key", "expiration time": "2026-01-01T00:00:00Z"},
        "inference": {"key": "i-key", "expiration time": "2026-01-01T00:00:00Z"},
        "API": {"key": "a-key"}}


@pytest.fixture
def repository(tmp_path):
    """A repository layout holding scripts/token.sh, and a separate folder to run it from."""
    (tmp_path / "repo" / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "token.sh", tmp_path / "repo" / "scripts" / "token.sh")
    (tmp_path / "elsewhere").mkdir()
    return tmp_path / "repo"


def token(repository, *args, **env):
    environ = {k: v for k, v in os.environ.items() if k != "KEY_FILE"} | env
    return subprocess.run(["bash", str(repository / "scripts" / "token.sh"), *args], capture_output=True,
                          text=True, cwd=repository.parent / "elsewhere", env=environ, timeout=30)


@pytest.mark.parametrize("name, key", [(None, "i-key"), ("inference", "i-key"), ("management", "m-key"),
                                       ("api", "a-key"), ("API", "a-key")])
def test_prints_each_key_from_the_repository_root_whatever_the_current_folder(repository, name, key):
    (repository / "key_file.json").write_text(json.dumps(KEYS))
    done = token(repository, *([name] if name else []))
    assert (done.returncode, done.stdout, done.stderr) == (0, key + "\n", "")


def test_key_file_overrides_the_repository_root(repository, tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({**KEYS, "inference": {"key": "other-key"}}))
    done = token(repository, KEY_FILE=str(tmp_path / "other.json"))
    assert (done.returncode, done.stdout) == (0, "other-key\n")


def test_without_a_server_it_says_so_without_a_traceback(repository):
    done = token(repository)
    assert done.returncode == 1 and done.stdout == ""
    assert "does not exist" in done.stderr and "make serve" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unknown_key_name_lists_the_names(repository):
    (repository / "key_file.json").write_text(json.dumps(KEYS))
    done = token(repository, "admin")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "'admin'" in done.stderr and "management, inference, API" in done.stderr
