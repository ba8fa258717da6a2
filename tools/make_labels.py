#!/usr/bin/env python3
"""Regenerate config/imagenet1k-labels.txt and config/imagenet1k-wnids.txt.

Source of truth: the two ImageNet metadata files shipped inside the `timm`
wheel on PyPI (no network access or torch needed, standard library only):

    timm/data/_info/imagenet_synsets.txt         1000 WordNet ids, class order
    timm/data/_info/imagenet_synset_to_lemma.txt  "wnid<TAB>lemma, lemma, ..."

Line i of each output file describes class i (0 = tench ... 999 = toilet
tissue).  The label is the FIRST comma-separated lemma of the synset, e.g.
"tabby, tabby cat" -> "tabby".  Two names occur twice with this rule and are
kept as is, because they are two different classes in ImageNet:
"crane" (134 bird, 517 machine) and "maillot" (638, 639).

Reproduce:
    pip download --no-deps timm -d /tmp/timmwheel
    python3 tools/make_labels.py /tmp/timmwheel/timm-*.whl
"""

import argparse
import os
import sys
import zipfile

SYNSETS = "timm/data/_info/imagenet_synsets.txt"
LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"

# Spot checks of the standard ImageNet-1k class order.
EXPECTED = {
    0: ("n01440764", "tench"),
    1: ("n01443537", "goldfish"),
    281: ("n02123045", "tabby"),
    282: ("n02123159", "tiger cat"),
    285: ("n02124075", "Egyptian cat"),
    967: ("n07920052", "espresso"),
    999: ("n15075141", "toilet tissue"),
}


def read_member(source, member):
    """Read a text member from a timm wheel (zip) or an unpacked tree."""
    if os.path.isdir(source):
        path = os.path.join(source, member)
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except OSError as e:
            sys.exit(f"make_labels: cannot read {path}: {e}")
    try:
        with zipfile.ZipFile(source) as z:
            return z.read(member).decode("utf-8")
    except KeyError:
        sys.exit(f"make_labels: {source} has no member {member} (not a timm wheel?)")
    except (OSError, zipfile.BadZipFile) as e:
        sys.exit(f"make_labels: cannot open {source} as a wheel: {e}")


def build(source):
    wnids = [l.strip() for l in read_member(source, SYNSETS).splitlines() if l.strip()]
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        sys.exit(f"make_labels: expected 1000 distinct synsets, got {len(wnids)}")
    lemmas = {}
    for line in read_member(source, LEMMAS).splitlines():
        if not line.strip():
            continue
        wnid, _, text = line.partition("\t")
        lemmas[wnid.strip()] = text.strip()
    labels = []
    for i, w in enumerate(wnids):
        if w not in lemmas:
            sys.exit(f"make_labels: no lemma for class {i} ({w})")
        labels.append(lemmas[w].split(",")[0].strip())
    for i, (w, lab) in EXPECTED.items():
        if wnids[i] != w or labels[i] != lab:
            sys.exit(f"make_labels: class {i} is {wnids[i]} {labels[i]!r}, "
                     f"expected {w} {lab!r}; class order is not the standard one")
    return wnids, labels


def write_if_changed(path, lines):
    data = "".join(l + "\n" for l in lines)
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == data:
                print(f"{path}: unchanged")
                return
    except OSError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(data)
    os.replace(tmp, path)
    print(f"{path}: written ({len(lines)} lines)")


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(
        description="Regenerate the ImageNet-1k label and wnid lists from a timm wheel.",
        epilog="Get the wheel with: pip download --no-deps timm -d /tmp/timmwheel")
    p.add_argument("source", help="path to a timm-*.whl file (or an unpacked wheel directory)")
    p.add_argument("--out-dir", default=os.path.join(here, os.pardir, "config"),
                   help="directory for imagenet1k-labels.txt and imagenet1k-wnids.txt "
                        "(default: config/ of this repository)")
    a = p.parse_args(argv)
    wnids, labels = build(a.source)
    os.makedirs(a.out_dir, exist_ok=True)
    out = os.path.normpath(a.out_dir)
    write_if_changed(os.path.join(out, "imagenet1k-labels.txt"), labels)
    write_if_changed(os.path.join(out, "imagenet1k-wnids.txt"), wnids)


if __name__ == "__main__":
    main()
