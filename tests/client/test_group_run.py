"""The sweep runner's pure parts: placeholders, parameter grids, members."""

from __future__ import annotations

import pytest

from tether._submit import members_of
from tether.client._group import expand_params, substitute


def test_placeholders_are_replaced_and_other_braces_left_alone() -> None:
    argv = ["python", "-c", "print({'a': 1})", "--seed", "{index}", "--lr={lr}", "{nope}", "{}"]
    assert substitute(argv, {"index": "7", "lr": "0.1"}) == [
        "python", "-c", "print({'a': 1})", "--seed", "7", "--lr=0.1", "{nope}", "{}",
    ]  # fmt: skip


def test_a_grid_is_every_combination_first_name_slowest() -> None:
    assert expand_params(["lr=0.1,0.01", "bs=32,64"]) == [
        {"lr": "0.1", "bs": "32"},
        {"lr": "0.1", "bs": "64"},
        {"lr": "0.01", "bs": "32"},
        {"lr": "0.01", "bs": "64"},
    ]


@pytest.mark.parametrize(
    ("specs", "needle"),
    [
        (["lr"], "write NAME=V1,V2"),
        (["1x=2"], "write NAME=V1,V2"),
        (["lr=,"], "no values"),
        (["lr=1", "lr=2"], "given twice"),
        (["index=1"], "reserved name 'index'"),
    ],
)
def test_bad_grids_say_why(specs: list[str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        expand_params(specs)


def test_members_come_from_the_count_or_the_grid() -> None:
    assert members_of(3, None) == [{}, {}, {}]
    assert members_of(None, {"lr": [0.1, 0.2]}) == [{"lr": "0.1"}, {"lr": "0.2"}]
    assert members_of(2, {"lr": [0.1, 0.2]}) == [{"lr": "0.1"}, {"lr": "0.2"}]
    with pytest.raises(ValueError, match="count 3 does not match the 2 combinations"):
        members_of(3, {"lr": [0.1, 0.2]})
    with pytest.raises(ValueError, match="give a count"):
        members_of(None, None)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--count", "4", "--"], "give the program to run after --"),
        (["--param", "lr", "--", "python"], "write NAME=V1,V2"),
        (["--count", "3", "--param", "lr=1,2", "--", "python"], "count 3 does not match"),
        (["--count", "4", "--min-count", "5", "--", "python"], "--min-count must be from 1 to"),
        (["--count", "4", "--dry-run", "--", "python"], "--dry-run goes with --on kubernetes"),
        (["--count", "4", "--gpus", "1.5", "--", "python"], "use a fraction of one device"),
    ],
)
def test_submit_refuses_bad_arguments_in_one_line_before_asking_the_pool(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tether.cli import main

    assert main(["submit", "--pool", "http://127.0.0.1:9", "--token", "tu_x", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tether: error: ") and needle in err and err.count("\n") == 1
