"""`dataforge push` against the fake hub: what is uploaded, and a card the Hub's own parser accepts."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from hubtools import cli
from huggingface_hub import DatasetCard

pytestmark = pytest.mark.integration


def test_push_uploads_the_splits_and_a_card_with_provenance(hub, project):
    root = project.parent
    assert cli(hub, "build", "-q", project, cwd=root)[0] == 0
    build = root / "data/processed/hubmix"
    # The fake speaks the Git LFS batch protocol, not Xet storage: huggingface_hub is told to use the former.
    env = {"HF_TOKEN": "hf_write", "HF_HUB_DISABLE_XET": "1"}
    code, out, err = cli(hub, "push", build, "hf://me/hubmix-sft", cwd=root, env=env)
    assert code == 0, err
    assert "Pushed" in out
    assert hub.created == [{"name": "hubmix-sft", "organization": "me", "visibility": "public", "type": "dataset"}]
    (commit,) = hub.commits
    assert commit["repo"] == "me/hubmix-sft"
    assert sorted(commit["files"]) == ["README.md", "data/train.parquet", "data/validation.parquet"]
    assert commit["files"]["data/train.parquet"] == (build / "train.parquet").read_bytes()
    assert commit["files"]["data/validation.parquet"] == (build / "val.parquet").read_bytes()
    # The splits went through LFS (uploaded by sha256 before the commit), the card inline.
    lfs = sorted(r.path for r in hub.requests if r.method == "PUT")
    digests = [hashlib.sha256((build / n).read_bytes()).hexdigest() for n in ("train.parquet", "val.parquet")]
    assert lfs == sorted(f"/lfs-upload/{d}" for d in digests)
    push_auth = {r.headers.get("Authorization") for r in hub.requests if r.method == "POST"}
    assert push_auth == {"Bearer hf_write"}

    card = DatasetCard(commit["files"]["README.md"].decode())
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0"  # both sources' cards say so
    assert meta["size_categories"] == ["n<1K"]
    assert meta["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "data/train.parquet"},
                {"split": "validation", "path": "data/validation.parquet"},
            ],
        }
    ]
    info = meta["dataset_info"]
    assert [(s["name"], s["num_examples"]) for s in info["splits"]] == [("train", 24), ("validation", 6)]
    names = [f["name"] for f in info["features"]]
    assert names[:3] == ["id", "kind", "messages"]
    messages = next(f for f in info["features"] if f["name"] == "messages")
    assert [f["name"] for f in messages["list"]][:2] == ["role", "content"]

    chat = hub.hf["acme/chat"].commit
    rows = [line for line in card.text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| source | from | revision | commit | license |")
    assert rows[1].startswith(f"| chat | hf://acme/chat | main | {chat[:12]} | apache-2.0 | sharegpt | ")
    assert rows[1].endswith("| 20 | 16 | 4 |")
    assert rows[2].startswith("| huanhuan | ms://kmno4zx/huanhuan-chat | master | – | apache-2.0 | alpaca | ")
    block = card.text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block.startswith("name: hubmix\nseed: 1\nsources:\n- name: chat\n  from: hf://acme/chat\n")
    recipe = yaml.safe_load(block)
    assert recipe["sources"][0] == {"name": "chat", "from": "hf://acme/chat", "format": "sharegpt"}
    assert recipe["split"] == {"validation": 0.2}


def test_push_refuses_what_is_not_a_build_or_a_hub_address(hub, tmp_path):
    code, _, err = cli(hub, "push", tmp_path, "hf://me/x", cwd=tmp_path)
    assert code == 2 and "Traceback" not in err
    assert f"error: {tmp_path}: no manifest.json, so this is not a finished build" in err
    code, _, err = cli(hub, "push", tmp_path, "me/x", cwd=tmp_path)
    assert code == 2
    assert "error: 'me/x': push to hf://owner/name or ms://owner/name" in err


def test_push_with_an_unset_token_variable_stops_before_uploading(hub, project):
    root = project.parent
    assert cli(hub, "build", "-q", project, cwd=root)[0] == 0
    hub.requests.clear()
    build = root / "data/processed/hubmix"
    code, _, err = cli(hub, "push", build, "hf://me/x", "--token-env", "PUSH_TOKEN", cwd=root)
    assert code == 2 and "Traceback" not in err
    assert "error: --token-env PUSH_TOKEN: the variable is not set" in err
    # A token given where the variable's name goes is refused, and not printed.
    code, out, err = cli(hub, "push", build, "hf://me/x", "--token-env", "hf_FakeToken42", cwd=root)
    assert code == 2 and "Traceback" not in err
    assert "error: --token-env: this looks like a token (`hf_…`, 14 characters)" in err
    assert "FakeToken42" not in out + err
    assert hub.requests == [] and hub.commits == []


def test_push_to_modelscope_sends_the_same_files(hub, project):
    root = project.parent
    assert cli(hub, "build", "-q", project, cwd=root)[0] == 0
    build = root / "data/processed/hubmix"
    env = {"MODELSCOPE_API_TOKEN": "ms-token"}
    code, out, err = cli(hub, "push", build, "ms://me/hubmix-sft", "--private", cwd=root, env=env)
    assert code == 0, err
    assert "https://www.modelscope.cn/datasets/me/hubmix-sft" in out
    assert hub.created[0] == {"hub": "ms", "repo": "me/hubmix-sft", "visibility": "1"}  # 1: private on ModelScope
    pushed = hub.ms["me/hubmix-sft"].files
    assert sorted(pushed) == ["README.md", "data/train.parquet", "data/validation.parquet"]
    assert pushed["data/train.parquet"] == (build / "train.parquet").read_bytes()
    assert DatasetCard(pushed["README.md"].decode()).data.to_dict()["license"] == "apache-2.0"
    assert {r.headers.get("Authorization") for r in hub.requests if r.method == "POST"} == {"Bearer ms-token"}
