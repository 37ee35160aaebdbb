"""Rows with image, video or audio inputs: rejected as `multimodal_unsupported`, naming the field and the media,
in every spelling (media columns, content parts), never written by any format or export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataforge import formats
from dataforge.checking import check_files
from dataforge.engine.runner import run
from dataforge.exports import export, export_names
from dataforge.formats import media
from dataforge.recipe import load_recipe
from dataforge.record import Example, Kind, Message, Provenance, Role
from dataforge.stages.write import write_build

NOT_CARRIED = "dataforge does not carry image, video or audio inputs yet; the row is left out rather than trained on"
TEXT_ROW = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}


def user_assistant(question: str, answer: str = "It is a cat.") -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


# (name, record, format, field, message): every spelling of media dataforge meets in the wild.
CASES = [
    (
        "llamafactory-images",  # mllm_demo.json: OpenAI-style messages + an `images` column
        {"messages": user_assistant("<image>Who are they?"), "images": ["mllm_demo_data/1.jpg"]},
        None,
        "images",
        f"row has 1 image (images[0] 'mllm_demo_data/1.jpg'): {NOT_CARRIED} a bare <image> placeholder",
    ),
    (
        "sharegpt-two-images",
        {
            "conversations": [
                {"from": "human", "value": "<image>Who?"},
                {"from": "gpt", "value": "Kane."},
                {"from": "human", "value": "And now?<image>"},
                {"from": "gpt", "value": "Gretzka."},
            ],
            "images": ["a.jpg", "b.jpg"],
        },
        "sharegpt",
        "images",
        f"row has 2 images (images[0] 'a.jpg', images[1] 'b.jpg'): {NOT_CARRIED} bare <image> placeholders",
    ),
    (
        "alpaca-video",
        {"instruction": "<video>Why is it funny?", "input": "", "output": "A baby reads.", "videos": ["1.mp4"]},
        "alpaca",
        "videos",
        f"row has 1 video (videos[0] '1.mp4'): {NOT_CARRIED} a bare <video> placeholder",
    ),
    (
        "video-and-audio",  # mllm_video_audio_demo.json
        {"messages": user_assistant("<video><audio>What is she saying?"), "videos": ["4.mp4"], "audios": ["4.mp3"]},
        "openai",
        "videos",
        f"row has 1 video and 1 audio (videos[0] '4.mp4', audios[0] '4.mp3'): {NOT_CARRIED} "
        "bare <video> and <audio> placeholders",
    ),
    (
        "swift-audios",
        {"messages": user_assistant("<audio>What sound?"), "audios": ["glass.wav"]},
        "swift",
        "audios",
        f"row has 1 audio (audios[0] 'glass.wav'): {NOT_CARRIED} a bare <audio> placeholder",
    ),
    (
        "llava-image",  # LLaVA: one `image` path beside ShareGPT turns
        {
            "id": "000000033471",
            "image": "coco/train2017/000000033471.jpg",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat colour is the bus?"},
                {"from": "gpt", "value": "Red."},
            ],
        },
        "sharegpt",
        "image",
        f"row has 1 image (image 'coco/train2017/000000033471.jpg'): {NOT_CARRIED} a bare <image> placeholder",
    ),
    (
        "typed-image-part",  # v1_multimodal_demo.jsonl
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "value": "data/1.jpg"}, {"type": "text", "value": "Who?"}],
                },
                {"role": "assistant", "content": [{"type": "text", "value": "Kane."}]},
            ]
        },
        "typed",
        "messages[0].content[0]",
        f"row has 1 image (messages[0].content[0] 'data/1.jpg'): {NOT_CARRIED} its text without the image",
    ),
    (
        "openai-image-url-part",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                    ],
                },
                {"role": "assistant", "content": "A cat."},
            ]
        },
        "openai",
        "messages[0].content[1]",
        f"row has 1 image (messages[0].content[1] 'https://example.com/cat.png'): {NOT_CARRIED} "
        "its text without the image",
    ),
    (
        "openai-input-audio-part",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}],
                },
                {"role": "assistant", "content": "A cough."},
            ]
        },
        None,
        "messages[0].content[0]",
        f"row has 1 audio (messages[0].content[0] wav data (8 chars)): {NOT_CARRIED} its text without the audio",
    ),
    (
        "openai-data-url",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 400}}],
                },
                {"role": "assistant", "content": "A dot."},
            ]
        },
        "openai",
        "messages[0].content[0]",
        f"row has 1 image (messages[0].content[0] 'data:image/png;base64,…' (422 chars)): {NOT_CARRIED} "
        "its text without the image",
    ),
    (
        "trl-image-placeholder-part",  # trl's vision datasets: {"type": "image"} marks where `images[i]` goes
        {
            "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}],
            "completion": [{"role": "assistant", "content": "A red bus."}],
            "images": ["bus.jpg"],
        },
        "trl",
        "images",
        f"row has 1 image (images[0] 'bus.jpg'): {NOT_CARRIED} a bare <image> placeholder",
    ),
]


@pytest.mark.parametrize(("record", "fmt", "field", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_row_with_media_is_rejected_naming_the_field_and_the_media(tmp_path, record, fmt, field, message):
    text_row = {
        None: TEXT_ROW,
        "openai": TEXT_ROW,
        "swift": TEXT_ROW,
        "sharegpt": {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
        "alpaca": {"instruction": "Hi", "input": "", "output": "Hello."},
        "typed": {
            "messages": [
                {"role": "user", "content": [{"type": "text", "value": "Hi"}]},
                {"role": "assistant", "content": [{"type": "text", "value": "Hello."}]},
            ]
        },
        "trl": {
            "prompt": [{"role": "user", "content": "Hi"}],
            "completion": [{"role": "assistant", "content": "Hello."}],
        },
    }[fmt]
    path = tmp_path / "mm.jsonl"
    path.write_text(json.dumps(text_row) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    checked = check_files(str(path), fmt, root=tmp_path)
    assert checked.examples.num_rows == 1  # the text row converts; the media row does not
    [reject] = checked.rejects.to_pylist()
    assert (reject["file"], reject["row"], reject["line"]) == ("mm.jsonl", 1, 2)
    assert (reject["stage"], reject["outcome"], reject["reason"]) == ("convert", "rejected", "multimodal_unsupported")
    assert reject["field"] == field
    assert reject["message"] == message
    # The reject holds the record as the file held it, media and all (content parts put back where they were).
    assert without_nulls(json.loads(reject["raw"])) == record


def without_nulls(value: Any) -> Any:
    """A record without the nulls Arrow gives fields a record did not have (the typed converter's rejects keep
    them, as every convert-stage reject of a columnar read does)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def test_every_media_item_is_counted_and_the_first_two_named(tmp_path):
    record = {"messages": user_assistant("<image><image><image>Compare them."), "images": ["1.jpg", "2.jpg", "3.jpg"]}
    path = tmp_path / "three.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    [reject] = check_files(str(path), None, root=tmp_path).rejects.to_pylist()
    assert reject["message"] == (
        f"row has 3 images (images[0] '1.jpg', images[1] '2.jpg', … 1 more): {NOT_CARRIED} bare <image> placeholders"
    )


def test_an_empty_media_column_is_not_media(tmp_path):
    """`images: []` (a text row in a multimodal file) holds no image: the row converts, the column is kept."""
    record = {"messages": user_assistant("What is 2+2?", "4"), "images": []}
    path = tmp_path / "empty.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    checked = check_files(str(path), None, root=tmp_path)
    assert checked.rejects.num_rows == 0
    [row] = checked.examples.to_pylist()
    assert json.loads(row["metadata"]) == {"images": []}


def test_a_text_content_list_without_media_is_left_to_the_schema(tmp_path):
    """Only content lists holding media are set aside; a text-only list is what it was before (a schema violation
    of the openai format, whose content is a string)."""
    record = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}, TEXT_ROW["messages"][1]]}
    path = tmp_path / "parts.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    [reject] = check_files(str(path), "openai", root=tmp_path).rejects.to_pylist()
    assert (reject["reason"], reject["field"]) == ("schema_violation", "messages[0].content")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    columns=st.dictionaries(
        st.sampled_from(["images", "videos", "audios"]),
        st.lists(st.text(alphabet="abc/._0123456789", min_size=1, max_size=12), min_size=1, max_size=4),
        min_size=1,
    ),
    placeholders=st.booleans(),
)
def test_any_media_columns_reject_the_row_and_count_each_item(tmp_path, columns, placeholders):
    tags = "".join(f"<{column[:-1]}>" * len(items) for column, items in columns.items()) if placeholders else ""
    record = {"messages": user_assistant(tags + "Describe."), **columns}
    path = tmp_path / "any.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    checked = check_files(str(path), "openai", root=tmp_path)
    assert checked.examples.num_rows == 0
    [reject] = checked.rejects.to_pylist()
    assert reject["reason"] == "multimodal_unsupported"
    assert reject["field"] == next(c for c in ("images", "videos", "audios") if c in columns)
    for column, items in columns.items():
        n = len(items)
        assert f"{n} {column[:-1]}{'s' if n != 1 else ''}" in reject["message"]
    assert ("placeholder" in reject["message"]) == placeholders
    assert json.loads(reject["raw"]) == record


def canonical_with_media(kind: Kind) -> dict[str, Any]:
    """A canonical row of `kind` whose metadata carries an `images` column, as an older build or another tool
    could hand a writer."""
    user, answer = Message(Role.USER, "<image>Who is it?"), Message(Role.ASSISTANT, "Kane.")
    more: dict[str, Any] = {
        Kind.SFT: {"messages": (user, answer)},
        Kind.PREFERENCE: {
            "messages": (user,),
            "chosen": (answer,),
            "rejected": (Message(Role.ASSISTANT, "Nobody."),),
        },
        Kind.KTO: {"messages": (user, answer), "label": True},
        Kind.PRETRAIN: {"text": "<image>A caption."},
    }[kind]
    return Example(
        id="s:0", kind=kind, provenance=Provenance("s", "s.jsonl", 0, 1), metadata={"images": ["1.jpg"]}, **more
    ).to_row()


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("fmt", formats.names())
def test_no_format_writes_a_row_with_media(fmt, kind):
    written = formats.get(fmt).from_examples([canonical_with_media(kind)])
    assert written.records == []
    assert written.losses == {media.NOT_WRITTEN: 1}
    assert written.unwritten == 1


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("name", export_names())
def test_no_export_writes_a_row_with_media(name, kind):
    row = canonical_with_media(kind)
    exported = export(name, {"train": [row]}, "mm")
    assert sum(exported.rows.values()) == 0
    assert exported.losses == {"train": {kind.value: {media.NOT_WRITTEN: 1}}}
    assert exported.left_out == [(row, media.NOT_WRITTEN)]
    assert not any("<image>" in text or "1.jpg" in text for text in exported.files.values())


MULTIMODAL_RECIPE = """\
name: mm
seed: 1
sources:
  - name: chat
    from: data/chat.jsonl
  - name: vision
    from: data/vision.json
split:
  validation: 0
outputs:
  exports: [llamafactory, sharegpt, ms-swift]
"""


def test_a_build_rejects_media_rows_counts_them_in_the_ledger_and_exports_text_only(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    chat = [{"messages": user_assistant(f"Question {i}?", f"Answer {i}.")} for i in range(4)]
    (data / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat), encoding="utf-8")
    vision = [
        {"messages": user_assistant(f"<image>Who is in picture {i}?", f"Player {i}."), "images": [f"img/{i}.jpg"]}
        for i in range(3)
    ] + [{"messages": user_assistant("And without a picture?", "Nobody."), "images": []}]
    (data / "vision.json").write_text(json.dumps(vision, indent=2), encoding="utf-8")
    (tmp_path / "mix.yaml").write_text(MULTIMODAL_RECIPE, encoding="utf-8")
    loaded = load_recipe(tmp_path / "mix.yaml")
    result = run(loaded)
    manifest = write_build(loaded, result.stages, result.entries)
    ledger = manifest["ledger"]
    assert ledger["sources"]["vision"] == {**ledger["sources"]["vision"], "in": 4, "rejected": 3, "train": 1}
    assert ledger["total"]["balanced"] and ledger["sources"]["vision"]["balanced"]
    out = loaded.build_dir
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    media_rejects = [r for r in rejects if r["reason"] == "multimodal_unsupported"]
    assert [(r["source"], r["file"], r["stage"], r["field"]) for r in media_rejects] == [
        ("vision", "data/vision.json", "convert", "images")
    ] * 3
    assert media_rejects[0]["message"] == (
        f"row has 1 image (images[0] 'img/0.jpg'): {NOT_CARRIED} a bare <image> placeholder"
    )
    assert ledger["total"]["rejected"] == 3 and ledger["total"]["train"] == 5
    report = json.loads((out / "report/report.json").read_text())
    assert {"stage": "convert", "outcome": "rejected", "reason": "multimodal_unsupported", "count": 3}.items() <= next(
        r for r in report["removed_by_reason"] if r["reason"] == "multimodal_unsupported"
    ).items()
    # No export holds a placeholder or a media path, and LLaMA-Factory's description maps what the files hold.
    exported = [p for p in (out / "exports").rglob("*") if p.is_file()]
    assert exported
    for path in exported:
        text = path.read_text(encoding="utf-8")
        assert "<image>" not in text and "img/" not in text, path
    info = json.loads((out / "exports/llamafactory/dataset_info.json").read_text())
    for entry in info.values():
        keys = {
            k
            for line in (out / "exports/llamafactory" / entry["file_name"]).read_text().splitlines()
            for k in json.loads(line)
        }
        assert keys <= set(entry["columns"].values()) | {"images"}
        # The text row of the multimodal file kept its empty `images` column: no image, no placeholder.
        assert "images" not in entry["columns"]


PEER_FILES = [
    ("mllm_demo.json", "openai", "images", 6),
    ("mllm_video_demo.json", "openai", "videos", 3),
    ("mllm_audio_demo.json", "openai", "audios", 3),
    ("mllm_video_audio_demo.json", "openai", "videos", 3),
    ("v1_multimodal_demo.jsonl", "typed", None, 24),
]


@pytest.mark.parametrize(("name", "fmt", "field", "rows"), PEER_FILES)
def test_llamafactory_multimodal_demos_are_rejected_as_multimodal(fixture_path, name, fmt, field, rows):
    source: Path = fixture_path(f"peers/llamafactory/{name}").resolve()
    checked = check_files(str(source), None, root=source.parent)
    assert (checked.format, checked.records, checked.examples.num_rows) == (fmt, rows, 0)
    rejects = checked.rejects.to_pylist()
    assert len(rejects) == rows
    assert {r["reason"] for r in rejects} == {"multimodal_unsupported"}
    for r in rejects:
        assert NOT_CARRIED in r["message"]
        assert r["field"] == field if field else r["field"].startswith("messages[")
