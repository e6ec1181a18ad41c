"""Profiles: named ones, overrides (``-p KEY VALUE``), networks and folds."""
import pytest

from fermap_utils.errors import FermapError
from fermap_utils.profiles import apply_overrides, parse_overrides, profile, profile_folds, profile_networks


def test_parse_overrides_reads_values_as_yaml():
    pairs = [["epochs", "3"], ["explain.kernel_width", "0.25"], ["learning_rate", "1.0e-3"],
             ["networks", "[WeiNet, SongNet]"], ["tune", "{SongNet: {epochs: 20, optimizer: adam}}"],
             ["weights", "null"], ["name", "smoke"], ["cache", "false"]]
    got = parse_overrides(pairs)
    assert got == {"epochs": 3, "explain.kernel_width": 0.25, "learning_rate": 0.001,
                   "networks": ["WeiNet", "SongNet"], "tune": {"SongNet": {"epochs": 20, "optimizer": "adam"}},
                   "weights": None, "name": "smoke", "cache": False}
    assert [type(got[k]) for k in ("epochs", "learning_rate", "name")] == [int, float, str]


def test_parse_overrides_later_pairs_win_and_none_is_empty():
    assert parse_overrides([["epochs", "3"], ["epochs", "5"]]) == {"epochs": 5}
    assert parse_overrides(None) == {} and parse_overrides([]) == {}


def test_profiles_and_overrides():
    prof = profile("smoke", {"input_size": 40, "explain.num_samples": 50})
    assert prof["input_size"] == 40 and prof["explain"]["num_samples"] == 50 and prof["name"] == "smoke"
    assert profile("smoke")["input_size"] != 40  # overrides never leak into the configuration
    assert len(profile_networks(profile("paper"))) == 12
    with pytest.raises(FermapError, match="unknown profile"):
        profile("huge")


def test_folds_follow_the_profile():
    assert profile_folds({"folds": "all"}, [3, 1, 2]) == [1, 2, 3]
    assert profile_folds({"folds": 2}, [1, 2, 3]) == [1, 2]
    assert profile_folds({"folds": [3]}, [1, 2, 3]) == [3]


def test_apply_overrides_reaches_inside_and_copies():
    base = {"explain": {"num_samples": 1000, "seed": 0}, "networks": ["WeiNet"]}
    got = apply_overrides(base, {"explain.seed": 3, "networks": ["SongNet"], "tune.SongNet.epochs": 5})
    assert got == {"explain": {"num_samples": 1000, "seed": 3}, "networks": ["SongNet"],
                   "tune": {"SongNet": {"epochs": 5}}}
    assert base == {"explain": {"num_samples": 1000, "seed": 0}, "networks": ["WeiNet"]}  # not modified
    with pytest.raises(FermapError, match="'networks' is not a mapping"):
        apply_overrides(base, {"networks.x": 1})
