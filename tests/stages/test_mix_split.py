import pytest

from builders import qa, quiet, table
from dataforge.errors import DataError
from dataforge.recipe import Mix, Split
from dataforge.stages.mix import mix, targets
from dataforge.stages.split import split


def _rows(source, n):
    return [qa(source, i, f"{source} question {i}", f"answer {i}") for i in range(n)]


def test_targets_are_exact_shares_of_the_largest_feasible_total():
    assert targets({"a": 100, "b": 30}, {"a": 1, "b": 1}, None) == {"a": 30, "b": 30}
    assert targets({"a": 100, "b": 30}, {"a": 7, "b": 3}, None) == {"a": 70, "b": 30}
    assert targets({"a": 100, "b": 30}, {"a": 7, "b": 3}, 11) == {"a": 8, "b": 3}  # 7.7/3.3 → largest remainder
    assert targets({"a": 10, "b": 10}, {"a": 1, "b": 0}, None) == {"a": 10, "b": 0}


def test_infeasible_total_is_a_data_error_naming_the_source():
    with pytest.raises(DataError, match="'b'") as err:
        targets({"a": 100, "b": 30}, {"a": 1, "b": 1}, 100)
    assert "at most 60" in str(err.value)


def test_a_weighted_source_with_no_rows_is_a_data_error():
    with pytest.raises(DataError, match="source 'b' has no rows left"):
        targets({"a": 10, "b": 0}, {"a": 1, "b": 1}, None)


def test_ratio_mix_downsamples_reproducibly_and_reports_it():
    t = table(*_rows("a", 50), *_rows("b", 10))
    policy = Mix(strategy="ratio", ratios={"a": 0.5, "b": 0.5})
    first = mix(t, ["a", "b"], policy, seed=3, progress=quiet)
    again = mix(t, ["a", "b"], policy, seed=3, progress=quiet)
    other = mix(t, ["a", "b"], policy, seed=4, progress=quiet)
    kept = first.tables["examples"]
    assert kept["source"].to_pylist().count("a") == 10
    assert kept["source"].to_pylist().count("b") == 10
    assert kept["id"].to_pylist() == again.tables["examples"]["id"].to_pylist()
    assert kept["id"].to_pylist() != other.tables["examples"]["id"].to_pylist()
    ids = kept["id"].to_pylist()
    assert ids == sorted(ids, key=lambda i: (i.split(":")[0], int(i.split(":")[1])))  # original order kept
    dropped = first.tables["rejects"]
    assert dropped.num_rows == 40
    assert set(dropped["outcome"].to_pylist()) == {"downsampled"}
    assert first.stats["taken"] == {"a": 10, "b": 10}
    assert set(ids).isdisjoint(dropped["example_id"].to_pylist())


def test_natural_mix_keeps_everything():
    t = table(*_rows("a", 5))
    result = mix(t, ["a"], Mix(), seed=0, progress=quiet)
    assert result.tables["examples"].num_rows == 5 and result.tables["rejects"].num_rows == 0


def test_split_is_per_source_seeded_and_disjoint():
    t = table(*_rows("a", 40), *_rows("b", 20))
    result = split(t, ["a", "b"], Split(validation=0.25), seed=1, progress=quiet)
    train, val = result.tables["train"], result.tables["val"]
    assert val["source"].to_pylist().count("a") == 10
    assert val["source"].to_pylist().count("b") == 5
    assert train.num_rows == 45
    assert set(train["id"].to_pylist()).isdisjoint(val["id"].to_pylist())
    again = split(t, ["a", "b"], Split(validation=0.25), seed=1, progress=quiet)
    assert again.tables["val"]["id"].to_pylist() == val["id"].to_pylist()
    assert result.stats["per_source"] == {
        "a": {"train": 30, "val": 10, "val_removed": 0},
        "b": {"train": 15, "val": 5, "val_removed": 0},
    }
