"""Write a deterministic text file for the corpus's character-model trainers.

    python make_text.py OUT [CHARS]

Scripts such as nanoGPT's ``data/shakespeare_char/prepare.py`` download their text unless
the file is already there; the corpus fetches nothing, so this writes one of our own
instead: ``CHARS`` characters (default 200000) of play-like lines built from a fixed
vocabulary by a fixed linear congruential generator, the same bytes on every machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SPEAKERS = ("FIRST CITIZEN", "MENENIUS", "CORIOLANUS", "VOLUMNIA", "BRUTUS", "SICINIUS")
_WORDS = [
    "the",
    "and",
    "to",
    "of",
    "my",
    "you",
    "that",
    "in",
    "is",
    "not",
    "with",
    "your",
    "be",
    "his",
    "this",
    "for",
    "me",
    "it",
    "have",
    "he",
    "thou",
    "what",
    "but",
    "by",
    "shall",
    "so",
    "will",
    "as",
    "we",
    "our",
    "all",
    "are",
    "no",
    "do",
    "thee",
    "her",
    "him",
    "if",
    "upon",
    "good",
    "lord",
    "come",
    "on",
    "now",
    "more",
    "let",
    "say",
    "noble",
    "people",
    "rome",
    "city",
    "hear",
    "speak",
    "love",
    "death",
    "night",
    "blood",
    "honour",
    "grace",
    "heaven",
    "time",
    "would",
    "well",
    "than",
    "when",
    "mine",
    "hath",
    "yet",
    "here",
    "there",
    "know",
    "done",
]


def make_text(chars: int, seed: int = 20240601) -> str:
    """``chars`` characters of text; the same for the same arguments, everywhere."""
    state = seed
    out: list[str] = []
    size = 0

    def draw(n: int) -> int:
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (state >> 33) % n

    while size < chars:
        speech = [f"{_SPEAKERS[draw(len(_SPEAKERS))]}:\n"]
        for _ in range(1 + draw(4)):
            words = [_WORDS[draw(len(_WORDS))] for _ in range(4 + draw(8))]
            line = " ".join(words)
            speech.append(line[0].upper() + line[1:] + ".,;!?"[draw(5)] + "\n")
        speech.append("\n")
        block = "".join(speech)
        out.append(block)
        size += len(block)
    return "".join(out)[:chars]


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    target = Path(argv[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(make_text(int(argv[1]) if len(argv) > 1 else 200_000), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
