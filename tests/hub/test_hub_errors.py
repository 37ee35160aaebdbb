"""Hub failures a user meets, each one line naming the cause and what to do, with exit 2 (the recipe or the
account must change) or 1 (the network or the data); never a traceback. Plus retries and resume."""

from __future__ import annotations

import socket

import pytest
from fakehub import Repo
from hubtools import cli, sharegpt_rows

pytestmark = pytest.mark.integration


def recipe(tmp_path, source: str) -> object:
    path = tmp_path / "mix.yaml"
    path.write_text(f"name: one\nsources:\n  - name: s\n{source}", encoding="utf-8")
    return path


def error_line(err: str) -> str:
    assert "Traceback" not in err, err
    return next(line for line in err.splitlines() if line.startswith("error:"))


def test_unknown_repository_is_a_usage_error(hub, tmp_path):
    path = recipe(tmp_path, "    from: hf://acme/nope\n")
    code, _, err = cli(hub, "build", "-q", path, cwd=tmp_path)
    assert code == 2
    assert error_line(err) == "error: hf://acme/nope: no such dataset on the Hugging Face Hub"
    assert "hint: check the owner/name; if it is private, set `token_env:`" in err
    path = recipe(tmp_path, "    from: ms://acme/nope\n")
    code, _, err = cli(hub, "build", "-q", path, cwd=tmp_path)
    assert code == 2
    assert error_line(err) == "error: ms://acme/nope: no such dataset (or no revision 'master') on ModelScope"


def test_gated_repository_needs_a_token_from_the_named_variable(hub, tmp_path):
    hub.hf["acme/gated"] = Repo(files={"train.jsonl": sharegpt_rows(4, "gated")}, gated=True, token="hf_secret")
    path = recipe(tmp_path, "    from: hf://acme/gated\n")
    code, _, err = cli(hub, "build", "-q", path, cwd=tmp_path)
    assert code == 2
    assert error_line(err) == "error: hf://acme/gated is a gated dataset and no token was given"
    assert "accept its conditions at https://huggingface.co/datasets/acme/gated" in err

    path = recipe(tmp_path, "    from: hf://acme/gated\n    token_env: MY_HF_TOKEN\n")
    code, _, err = cli(hub, "build", "-q", path, cwd=tmp_path)
    assert code == 2
    assert error_line(err) == (
        "error: hf://acme/gated: `token_env: MY_HF_TOKEN` names an environment variable that is not set"
    )
    hub.requests.clear()
    code, out, err = cli(hub, "build", "-q", path, cwd=tmp_path, env={"MY_HF_TOKEN": "hf_secret"})
    assert code == 0, err
    assert "from 4 records" in out
    assert {r.headers.get("Authorization") for r in hub.requests} == {"Bearer hf_secret"}
    # The token itself is written nowhere: not in the lock, not in the build.
    assert "hf_secret" not in (tmp_path / "mix.lock").read_text()
    assert b"hf_secret" not in (tmp_path / "data/processed/one/manifest.json").read_bytes()


def test_a_private_modelscope_dataset_needs_a_token(hub, tmp_path):
    hub.ms["acme/private"] = Repo(files={"a.jsonl": sharegpt_rows(3, "private")}, gated=True, token="ms-secret")
    path = recipe(tmp_path, "    from: ms://acme/private\n")
    code, _, err = cli(hub, "build", "-q", path, cwd=tmp_path)
    assert code == 2
    assert error_line(err) == "error: ms://acme/private is private or needs approval and no token was given"
    path = recipe(tmp_path, "    from: ms://acme/private\n    token_env: MS_TOKEN\n")
    code, out, err = cli(hub, "build", "-q", path, cwd=tmp_path, env={"MS_TOKEN": "ms-secret"})
    assert code == 0, err
    assert "from 3 records" in out


def test_a_missing_split_lists_the_splits_there_are(hub, tmp_path):
    path = recipe(tmp_path, "    from: hf://acme/chat\n    split: validation\n")
    code, _, err = cli(hub, "build", "-q", path, cwd=tmp_path)
    assert code == 2
    assert error_line(err) == (
        "error: hf://acme/chat@main: subset 'default' has no split 'validation'; splits: train, test"
    )
    path = recipe(tmp_path, "    from: hf://acme/chat\n    revision: v9\n")
    code, _, err = cli(hub, "build", "-q", path, cwd=tmp_path)
    assert code == 2
    assert error_line(err) == "error: hf://acme/chat: no revision 'v9'"


def test_network_down_is_exit_1_after_retries(hub, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    path = recipe(tmp_path, "    from: hf://acme/chat\n")
    code, _, err = cli(hub, "build", "-q", path, cwd=tmp_path, env={"HF_ENDPOINT": dead})
    assert code == 1
    assert error_line(err) == f"error: hf://acme/chat: cannot reach {dead} (ConnectError)"
    assert err.count("retrying in") == 3
    path = recipe(tmp_path, "    from: ms://kmno4zx/huanhuan-chat\n")
    # The SDK retries a failed listing itself (with waits of seconds); one attempt each keeps the test short.
    sdk_once = {"MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS": "1", "MODELSCOPE_API_MAX_RETRIES": "0"}
    code, _, err = cli(hub, "build", "-q", path, cwd=tmp_path, env={"MODELSCOPE_ENDPOINT": dead, **sdk_once})
    assert code == 1
    assert error_line(err) == f"error: ms://kmno4zx/huanhuan-chat: cannot reach {dead} (NetworkError)"
    assert err.count("retrying in") == 3


def test_a_server_error_is_retried_and_a_cut_download_resumes(hub, tmp_path):
    train = "data/train-00000-of-00001.jsonl"
    hub.faults["/api/datasets/acme/chat/revision/main"] = [503, 502]  # retried by dataforge, with backoff
    hub.faults["/api/datasets/acme/chat/tree/"] = [503]  # retried by huggingface_hub itself
    hub.faults[f"GET /datasets/acme/chat/resolve/{hub.hf['acme/chat'].commit}/{train}"] = ["truncate"]
    path = recipe(tmp_path, "    from: hf://acme/chat\n")
    code, out, err = cli(hub, "build", "-q", path, cwd=tmp_path)
    assert code == 0, err
    assert "source s (hf://acme/chat): HfHubHTTPError: Server error '503 Service Unavailable'" in err
    assert "retrying in 0.05s (1/3)" in err and "retrying in 0.1s (2/3)" in err
    # The tree: 503 and its retry when resolving, then once more by snapshot_download.
    assert len([r for r in hub.requests if "/tree/" in r.path]) == 3
    assert (tmp_path / "data/raw/s" / train).read_bytes() == hub.hf["acme/chat"].files[train]
    # huggingface_hub resumes the cut stream from the bytes it had written; it writes in 10 MiB chunks, so a
    # file this small is asked for again from the start (ModelScope's Range resume is tested below).
    assert "Trying to resume download..." in err
    gets = [r for r in hub.requests if r.method == "GET" and r.path.endswith(train)]
    assert len(gets) == 2


def test_modelscope_resumes_a_cut_download(hub, tmp_path):
    hub.faults['"FilePath": ["huanhuan.json"]'] = ["truncate"]
    path = recipe(tmp_path, "    from: ms://kmno4zx/huanhuan-chat\n")
    code, _, err = cli(hub, "build", "-q", path, cwd=tmp_path)
    assert code == 0, err
    data = hub.ms["kmno4zx/huanhuan-chat"].files["huanhuan.json"]
    assert (tmp_path / "data/raw/s/huanhuan.json").read_bytes() == data
    gets = [r for r in hub.requests if r.path.endswith("/repo") and r.query.get("FilePath") == ["huanhuan.json"]]
    assert [r.headers.get("Range") for r in gets] == [None, f"bytes={len(data) // 2}-"]
