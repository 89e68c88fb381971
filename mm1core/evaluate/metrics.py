"""The scores of MM1's evaluation (Sec. 3.1, Appendix): CIDEr-D for captioning, VQAv2 accuracy for VQA.

- ``cider_d``: corpus CIDEr-D (Vedantam et al., 2015) by ``pycocoevalcap``, the COCO caption evaluation code, on
  lower-cased words and numbers with the punctuation dropped (what COCO's PTB tokenizer leaves for scoring).
- ``vqa_accuracy``: the official VQA evaluation (``vqaEval.py`` of github.com/GT-Vision-Lab/VQA): the prediction
  is normalised (``normalize_answer``); a reference list whose answers disagree has its punctuation processed;
  the accuracy is the mean, over the ten leave-one-annotator-out subsets of the references, of
  ``min(#matching answers / 3, 1)``. So 4 or more matching humans of 10 give 100, 3 give 90, 2 give 60, 1 gives 30.

Every corpus score is in percent; a task's ``metric`` is ``(references, predictions) -> percent``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pycocoevalcap.cider.cider import Cider

# ------------------------------------------------------------------------------------------------ CIDEr
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> str:
    """Lower-case words and numbers only, punctuation dropped (what the COCO PTB tokenizer leaves for scoring)."""
    return " ".join(_WORD.findall(text.lower()))


def cider_d(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> float:
    """Corpus CIDEr-D of ``hypotheses[i]`` against ``references[i]`` (one or more captions), in percent.

    The document frequencies come from the references of the whole corpus, so a score depends on the set."""
    truths = {index: [words(caption) for caption in captions] for index, captions in enumerate(references)}
    results = {index: [words(hypothesis)] for index, hypothesis in enumerate(hypotheses)}
    score, _ = Cider().compute_score(truths, results)
    return 100.0 * float(score)


# ------------------------------------------------------------------------------------------------- VQA
# The official code's tables, verbatim but for the contractions (a representative subset of its 120-odd).
CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldnt": "couldn't",
    "couldve": "could've",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hes": "he's",
    "Im": "I'm",
    "isnt": "isn't",
    "itll": "it'll",
    "Ive": "I've",
    "mightve": "might've",
    "mustnt": "mustn't",
    "oclock": "o'clock",
    "shes": "she's",
    "shouldnt": "shouldn't",
    "thats": "that's",
    "theres": "there's",
    "theyre": "they're",
    "theyve": "they've",
    "wasnt": "wasn't",
    "werent": "weren't",
    "whats": "what's",
    "wheres": "where's",
    "whos": "who's",
    "wont": "won't",
    "wouldnt": "wouldn't",
    "youre": "you're",
    "youve": "you've",
}
NUMBER_WORDS = {
    **{"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5"},
    **{"six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"},
}
ARTICLES = ("a", "an", "the")
# Official regexes, typo included: "(?!<=\d)" was meant as a look-behind but is a look-ahead that a "." never
# starts, so a full stop is dropped unless a digit follows it ("yes." -> "yes", "2.5" stays).
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
ANSWERS_PER_QUESTION = 10  # VQAv2's annotators per question
MATCHES_FOR_FULL_CREDIT = 3


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``: a mark next to a space (or any mark in a text holding a digit-comma-
    digit) is deleted, any other mark becomes a space; then full stops not followed by a digit go.

    (The official ``periodStrip.sub("", text, re.UNICODE)`` passes ``re.UNICODE`` as the *count*, 32: it differs
    from this only for texts with more than 32 full stops.)"""
    out = text
    delete = COMMA_STRIP.search(text) is not None
    for mark in PUNCTUATION:
        out = out.replace(mark, "" if delete or f"{mark} " in text or f" {mark}" in text else " ")
    return PERIOD_STRIP.sub("", out)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower-case, number words 0-10 (and ``none``) to digits, articles
    removed, contractions restored (``dont`` -> ``don't``); words re-joined by single spaces."""
    kept = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    kept = [word for word in kept if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in kept)


def normalize_answer(answer: str) -> str:
    """A predicted answer as the official evaluation compares it: newlines and tabs to spaces, stripped, then
    ``process_punctuation`` and ``process_digit_article`` (``"Two dogs."`` -> ``"2 dogs"``)."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """One question's VQAv2 accuracy in [0, 1] (the official rules, see the module docstring).

    ``answers`` are the annotators' answers as released (VQAv2's are already normalised): only their whitespace
    and, when they disagree, their punctuation are processed, as the official code does."""
    if not answers:
        raise ValueError("a VQA question needs at least one reference answer")
    predicted = normalize_answer(prediction)
    references = [answer.replace("\n", " ").replace("\t", " ").strip() for answer in answers]
    if len(set(references)) > 1:
        references = [process_punctuation(answer) for answer in references]
    matches = [reference == predicted for reference in references]
    total = sum(matches)
    # leaving out annotator i: the matches among the other answers
    credit = [min(1.0, (total - left_out) / MATCHES_FOR_FULL_CREDIT) for left_out in matches]
    return sum(credit) / len(credit)


def vqa_score(references: Sequence[Sequence[str]], predictions: Sequence[str]) -> float:
    """Mean VQAv2 accuracy of ``predictions[i]`` against the answers ``references[i]``, in percent (the official
    code also rounds it to two decimals; we do not)."""
    accuracies = [vqa_accuracy(answer, answers) for answer, answers in zip(predictions, references, strict=True)]
    return 100.0 * sum(accuracies) / len(accuracies)
