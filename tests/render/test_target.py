"""Loading render targets: local directories, template overrides, and never running remote code unasked."""

import json
import shutil
from pathlib import Path

import pytest

from dataforge.errors import DataError
from dataforge.render.target import load_target

DEMO = Path(__file__).resolve().parents[2] / "data" / "tokenizers" / "demo-chatml"


def test_a_local_directory_loads_with_digests(tmp_path):
    target = load_target("demo", str(DEMO), tmp_path)
    assert len(target.tokenizer) > 3000
    assert target.template and "<|im_start|>" in target.template
    assert len(target.tokenizer_digest) == 64 and len(target.template_digest) == 64
    again = load_target("demo", str(DEMO), tmp_path)
    assert (again.tokenizer_digest, again.template_digest) == (target.tokenizer_digest, target.template_digest)


def test_relative_paths_resolve_against_the_root_not_the_working_directory(tmp_path):
    shutil.copytree(DEMO, tmp_path / "models" / "demo")
    assert load_target("demo", "models/demo", tmp_path).template_digest
    with pytest.raises(DataError, match="tokenizer directory .*models/demo/missing does not exist"):
        load_target("demo", "models/demo/missing", tmp_path)
    with pytest.raises(DataError, match="tokenizer directory .*missing does not exist"):
        load_target("demo", "./missing", tmp_path)


def test_a_template_override_changes_the_template_digest_only(tmp_path):
    (tmp_path / "t.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    base = load_target("demo", str(DEMO), tmp_path)
    other = load_target("demo", str(DEMO), tmp_path, chat_template="t.jinja")
    assert other.tokenizer_digest == base.tokenizer_digest
    assert other.template_digest != base.template_digest


def test_remote_code_is_never_run_unless_the_recipe_allows_it(tmp_path):
    shutil.copytree(DEMO, tmp_path / "custom")
    marker = tmp_path / "code-ran"
    (tmp_path / "custom" / "custom_tokenizer.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PreTrainedTokenizerFast\n"
        "class CustomTokenizer(PreTrainedTokenizerFast):\n    pass\n"
    )
    config_path = tmp_path / "custom" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoTokenizer": [None, "custom_tokenizer.CustomTokenizer"]}
    config_path.write_text(json.dumps(config))
    # Without permission transformers falls back to the standard class and the file is never imported.
    plain = load_target("custom", "custom", tmp_path)
    assert not marker.exists()
    assert type(plain.tokenizer).__name__ != "CustomTokenizer"
    allowed = load_target("custom", "custom", tmp_path, trust_remote_code=True)
    assert marker.read_text() == "ran"
    assert type(allowed.tokenizer).__name__ == "CustomTokenizer"
