"""A recipe with an hf:// and an ms:// source, built by the real CLI against the fake hub on 127.0.0.1.

The done-when of issue 6: the build fetches and locks, rebuilds offline from data/raw with byte-identical
outputs and no request at all, and fails clearly (exit 1) when a remote file changes, until --update-lock.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from hubtools import alpaca_rows, cli, sharegpt_rows

pytestmark = pytest.mark.integration

TRAIN = "data/train-00000-of-00001.jsonl"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_build_fetches_both_hubs_writes_the_lock_and_rebuilds_offline_byte_identical(hub, project):
    root = project.parent
    code, out, err = cli(hub, "build", "-q", project, cwd=root)
    assert code == 0, err
    assert "Built hubmix: 24 train, 6 val from 30 records" in out
    assert "%|" not in err  # -q: no download progress bars from either client
    chat, ms = hub.hf["acme/chat"], hub.ms["kmno4zx/huanhuan-chat"]
    # Only the train split's file was fetched (the card's configs resolve `split: train` to it), into data/raw.
    assert (root / "data/raw/chat" / TRAIN).read_bytes() == chat.files[TRAIN]
    assert not (root / "data/raw/chat/data/test-00000-of-00001.jsonl").exists()
    assert (root / "data/raw/huanhuan/huanhuan.json").read_bytes() == ms.files["huanhuan.json"]
    lock = json.loads((root / "mix.lock").read_text())
    assert lock["sources"]["chat"]["commit"] == chat.commit
    assert lock["sources"]["chat"]["license"] == "apache-2.0"
    assert lock["sources"]["chat"]["files"] == [
        {"path": TRAIN, "sha256": sha(chat.files[TRAIN]), "size": len(chat.files[TRAIN])}
    ]
    assert lock["sources"]["huanhuan"]["revision"] == "master"
    assert lock["sources"]["huanhuan"]["files"] == [
        {"path": "huanhuan.json", "sha256": sha(ms.files["huanhuan.json"]), "size": len(ms.files["huanhuan.json"])}
    ]
    manifest = json.loads((root / "data/processed/hubmix/manifest.json").read_text())
    by_name = {s["name"]: s for s in manifest["sources"]}
    assert by_name["chat"]["hub"] == {
        "uri": "hf://acme/chat",
        "revision": "main",
        "commit": chat.commit,
        "license": "apache-2.0",
    }
    assert by_name["chat"]["files"][0]["file"] == f"data/raw/chat/{TRAIN}"
    built = (root / "data/processed/hubmix/train.parquet").read_bytes()

    # Offline, from scratch (no build directory, no stage cache): not one request, the same bytes.
    shutil.rmtree(root / "data/processed")
    hub.requests.clear()
    code, out, err = cli(hub, "build", "-q", "--offline", project, cwd=root)
    assert code == 0, err
    assert hub.requests == []
    assert (root / "data/processed/hubmix/train.parquet").read_bytes() == built

    # The hubs' own offline variables do the same without the flag.
    shutil.rmtree(root / "data/processed")
    code, _, err = cli(hub, "build", "-q", project, cwd=root, env={"HF_HUB_OFFLINE": "1", "MODELSCOPE_OFFLINE": "1"})
    assert code == 0, err
    assert hub.requests == []
    assert (root / "data/processed/hubmix/train.parquet").read_bytes() == built


def test_a_second_build_only_asks_whether_the_remotes_moved(hub, project):
    root = project.parent
    assert cli(hub, "build", "-q", project, cwd=root)[0] == 0
    lock_before = (root / "mix.lock").read_bytes()
    hub.requests.clear()
    code, out, err = cli(hub, "build", "-q", project, cwd=root)
    assert code == 0, err
    assert "Everything is cached: 11 stages" in out
    # One revision lookup and one tree listing on the HF side, the file listing on ModelScope; no download.
    asked = sorted({(r.method, r.path) for r in hub.requests})
    assert asked == [
        ("GET", "/api/datasets/acme/chat/revision/main"),
        ("GET", f"/api/datasets/acme/chat/tree/{hub.hf['acme/chat'].commit}"),
        ("GET", "/api/v1/datasets/kmno4zx/huanhuan-chat/repo/tree"),
    ]
    assert (root / "mix.lock").read_bytes() == lock_before
    # `plan` reads the lock and data/raw only.
    hub.requests.clear()
    code, out, _ = cli(hub, "plan", project, cwd=root)
    assert code == 0 and hub.requests == []
    assert "0 stage(s) to run, 11 cached." in out


def test_a_moved_remote_fails_the_build_until_update_lock(hub, project):
    root = project.parent
    assert cli(hub, "build", "-q", project, cwd=root)[0] == 0
    old_commit = hub.hf["acme/chat"].commit
    hub.hf["acme/chat"].files[TRAIN] = sharegpt_rows(25, "chat v2")
    code, out, err = cli(hub, "build", "-q", project, cwd=root)
    assert code == 1
    assert "Traceback" not in err
    assert (
        f"error: source 'chat': hf://acme/chat@main changed since mix.lock was written: it now points to commit "
        f"{hub.hf['acme/chat'].commit[:12]}, the lock has {old_commit[:12]}" in err
    )
    assert "dataforge build mix.yaml --update-lock" in err
    # Offline still builds what the lock pins.
    assert cli(hub, "build", "-q", "--offline", project, cwd=root)[0] == 0

    code, out, err = cli(hub, "build", "-q", "--update-lock", project, cwd=root)
    assert code == 0, err
    assert "Built hubmix: 28 train, 7 val from 35 records" in out
    # The lock entry is part of the read stage's key: only chat's branch and the global stages re-ran.
    assert "Re-ran 7 of 11 stages." in out
    lock = json.loads((root / "mix.lock").read_text())
    assert lock["sources"]["chat"]["commit"] == hub.hf["acme/chat"].commit
    assert lock["sources"]["chat"]["files"][0]["sha256"] == sha(hub.hf["acme/chat"].files[TRAIN])


def test_a_changed_modelscope_file_fails_the_build(hub, project):
    root = project.parent
    assert cli(hub, "build", "-q", project, cwd=root)[0] == 0
    old = sha(hub.ms["kmno4zx/huanhuan-chat"].files["huanhuan.json"])
    hub.ms["kmno4zx/huanhuan-chat"].files["huanhuan.json"] = alpaca_rows(12, "huanhuan v2")
    new = sha(hub.ms["kmno4zx/huanhuan-chat"].files["huanhuan.json"])
    code, _, err = cli(hub, "build", "-q", project, cwd=root)
    assert code == 1 and "Traceback" not in err
    assert (
        f"error: source 'huanhuan': ms://kmno4zx/huanhuan-chat@master changed since mix.lock was written: "
        f"huanhuan.json changed (sha256 {old[:12]}… → {new[:12]}…)" in err
    )
    code, out, err = cli(hub, "build", "-q", "--update-lock", project, cwd=root)
    assert code == 0, err
    assert (root / "data/raw/huanhuan/huanhuan.json").read_bytes() == hub.ms["kmno4zx/huanhuan-chat"].files[
        "huanhuan.json"
    ]
    assert "from 32 records" in out


def test_offline_says_exactly_what_is_missing(hub, project):
    root = project.parent
    code, _, err = cli(hub, "plan", project, cwd=root)  # plan never fetches: it says what to do
    assert code == 1 and hub.requests == []
    assert "error: source 'chat' (hf://acme/chat) has not been fetched: the recipe's lock file has no entry" in err
    code, _, err = cli(hub, "build", "-q", "--offline", project, cwd=root)
    assert code == 1 and hub.requests == []
    assert "error: source 'chat' (hf://acme/chat) is not in mix.lock, and the build is offline" in err
    assert cli(hub, "build", "-q", project, cwd=root)[0] == 0
    (root / "data/raw/chat" / TRAIN).unlink()
    hub.requests.clear()
    code, _, err = cli(hub, "build", "-q", "--offline", project, cwd=root)
    assert code == 1 and hub.requests == []
    commit = hub.hf["acme/chat"].commit[:12]
    assert f"error: source 'chat' (hf://acme/chat@{commit}): data/raw/chat/{TRAIN} is missing" in err
    assert "fetch it online with `dataforge build mix.yaml`" in err
    # An edited copy is refused as well.
    edited = root / "data/raw/huanhuan/huanhuan.json"
    edited.write_bytes(edited.read_bytes().replace(b"fine", b"FINE"))
    (root / "data/raw/chat" / TRAIN).write_bytes(hub.hf["acme/chat"].files[TRAIN])
    code, _, err = cli(hub, "build", "-q", "--offline", project, cwd=root)
    assert code == 1
    locked = sha(hub.ms["kmno4zx/huanhuan-chat"].files["huanhuan.json"])
    assert "data/raw/huanhuan/huanhuan.json has sha256 " in err and f"the lock says {locked[:12]}…" in err
    # Online, missing and edited files are fetched again at the locked commit.
    (root / "data/raw/chat" / TRAIN).unlink()
    assert cli(hub, "build", "-q", project, cwd=root)[0] == 0
    assert (root / "data/raw/chat" / TRAIN).read_bytes() == hub.hf["acme/chat"].files[TRAIN]
    assert edited.read_bytes() == hub.ms["kmno4zx/huanhuan-chat"].files["huanhuan.json"]
