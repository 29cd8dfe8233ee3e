"""worker.categories: synsets expanded through the shipped is-a pairs, built-ins by name, list files."""

from __future__ import annotations

import pytest

from worker.categories import (
    BUILTIN_SYNSETS,
    DATA_DIR,
    ISA_FILE,
    CategoryError,
    builtin_category,
    classes_under,
    load_categories,
    load_imagenet_classes,
    parse_category_arg,
    read_wnid_file,
)

ENTITY = "n00001740"


def isa_pairs() -> list[tuple[str, str]]:
    lines = ISA_FILE.read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines if not line.startswith("#")]  # type: ignore[misc]


def test_the_isa_file_says_where_it_comes_from_and_links_every_class_to_entity():
    header = [line for line in ISA_FILE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert any("WordNet 3.0" in line for line in header) and any("wn 0.0.23" in line for line in header)
    parents: dict[str, set[str]] = {}
    for parent, child in isa_pairs():
        parents.setdefault(child, set()).add(parent)
    # Every class walks up to entity, and every synset in the file is on such a path (nothing more).
    on_paths: set[str] = set()
    for wnid in load_imagenet_classes():
        todo, seen = [wnid], set()
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(parents.get(node, ()))
        assert ENTITY in seen, wnid
        on_paths |= seen
    assert on_paths == set(parents) | {ENTITY}


def test_bird_is_59_classes_all_under_the_synset():
    bird = parse_category_arg("bird=n01503061")
    assert (bird.name, len(bird.wnids), bird.source) == ("bird", 59, "synset:n01503061")
    classes = load_imagenet_classes()
    names = {classes[w].name.split(",")[0] for w in bird.wnids}
    assert {"cock", "ostrich", "bald eagle", "king penguin", "toucan", "goose"} <= names
    assert not {"tench", "Chihuahua", "tabby"} & names


def test_dog_synset_gives_exactly_the_118_classes_of_dog_txt():
    listed = read_wnid_file(DATA_DIR / "dog.txt")  # written independently of the is-a file
    assert classes_under("n02084071") == listed
    assert builtin_category("dog").wnids == listed
    # Stanford Dogs' wild canids (dingo, dhole, African hunting dog) are not domestic dogs.
    assert not {"n02115641", "n02115913", "n02116738"} & set(listed)


def test_builtins_by_name_and_their_class_counts():
    counts = {name: len(builtin_category(name).wnids) for name in BUILTIN_SYNSETS}
    assert counts == {"dog": 118, "bird": 59, "feline": 13, "reptile": 36, "vehicle": 67, "musical-instrument": 26}
    for name, synset in BUILTIN_SYNSETS.items():
        assert parse_category_arg(name) == builtin_category(name)
        assert builtin_category(name).wnids == classes_under(synset)
    # The groups do not overlap: each class is in at most one built-in.
    every = [w for name in BUILTIN_SYNSETS for w in builtin_category(name).wnids]
    assert len(every) == len(set(every))


def test_every_run_records_every_builtin_and_a_given_one_adds_or_replaces(tmp_path):
    assert [c.name for c in load_categories()] == sorted(BUILTIN_SYNSETS)
    path = tmp_path / "toy.txt"
    path.write_text("n02085620 Chihuahua\n")
    loaded = {c.name: c for c in load_categories(["bird", "big-cat=n02127808", f"dog={path}"])}
    assert sorted(loaded) == sorted([*BUILTIN_SYNSETS, "big-cat"])
    assert loaded["bird"] == builtin_category("bird")
    classes = load_imagenet_classes()
    # WordNet's big cats; cougar and lynx are wildcats, the other two of feline's eight non-domestic.
    assert {classes[w].name.split(",")[0] for w in loaded["big-cat"].wnids} == {
        "leopard", "snow leopard", "jaguar", "lion", "tiger", "cheetah"}
    assert loaded["dog"].wnids == ("n02085620",) and loaded["dog"].source == str(path)


def test_a_class_synset_is_itself_and_a_wnid_list_file_still_works(tmp_path):
    assert classes_under("n02085620") == ("n02085620",)
    path = tmp_path / "mix.txt"
    path.write_text("n02085620\nn01440764 tench\n")
    assert parse_category_arg(f"mix={path}").wnids == ("n01440764", "n02085620")


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("x=n99999999", r"synset n99999999 has no ImageNet-1k class under it"),
        ("x=n00021939", None),  # artifact: fine, 522 classes
        ("cat", r"no built-in category 'cat'"),
        ("bad name=n01503061", r"invalid category name 'bad name'"),
    ],
)
def test_bad_synsets_and_names_are_refused_clearly(arg, message):
    if message is None:
        assert len(parse_category_arg(arg).wnids) == 522
        return
    with pytest.raises(CategoryError, match=message):
        parse_category_arg(arg)
