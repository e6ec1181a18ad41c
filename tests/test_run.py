"""Run folders and profiles: the ``-p KEY VALUE`` overrides of the command line."""
from fermap_utils.run import parse_overrides


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
