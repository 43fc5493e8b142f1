"""Parsing and filtering model answers: lists in every usual shape, and malformed output."""

from __future__ import annotations

import random

import pytest

from tuner.pseudo_queries import ict_pairs, sentences
from tuner.question_filter import QuestionFilter, is_copy, is_question, parse_questions

CHUNK = ("NVIDIA invented the GPU in 1999. In fiscal year 2024 revenue was $60.9 billion, up 126% from a year "
         "ago, driven by data center demand for accelerated computing.")


@pytest.mark.parametrize("answer", [
    "1. What did NVIDIA invent in 1999?\n2. How much revenue did NVIDIA report in fiscal 2024?",
    "1) What did NVIDIA invent in 1999?\n2) How much revenue did NVIDIA report in fiscal 2024?",
    "- What did NVIDIA invent in 1999?\n- How much revenue did NVIDIA report in fiscal 2024?",
    "* **What did NVIDIA invent in 1999?**\n* **How much revenue did NVIDIA report in fiscal 2024?**",
    "Q1: What did NVIDIA invent in 1999?\nQ2: How much revenue did NVIDIA report in fiscal 2024?",
    "Here are two questions:\n\n1. What did NVIDIA invent in 1999?\n\n2. How much revenue did NVIDIA report in fiscal 2024?",
    "1. What did NVIDIA invent in 1999? 2. How much revenue did NVIDIA report in fiscal 2024?",
    '  1.   "What did NVIDIA invent in 1999?"  \r\n  2.\t“How much revenue did NVIDIA report in fiscal 2024?”',
])
def test_list_shapes_give_the_same_questions(answer):
    assert parse_questions(answer) == ["What did NVIDIA invent in 1999?",
                                       "How much revenue did NVIDIA report in fiscal 2024?"]


@pytest.mark.parametrize("answer", ["", "   \n\n", "1.\n2.\n-\n*", "Sure! Here you go:"])
def test_empty_or_marker_only_answers_give_nothing(answer):
    assert parse_questions(answer) == []


def test_filter_drops_and_counts_each_reason():
    answer = "\n".join([
        "1. What did NVIDIA invent in 1999?",
        "2. what did nvidia INVENT in 1999 ?",                  # duplicate (case, spacing)
        "3. The GPU.",                                         # not a question
        "4. In fiscal year 2024 revenue was $60.9 billion, up 126% from a year ago?",  # copied from the chunk
        "5. ?",                                                # empty once the marker is gone
        "6. Why did data center demand grow",                  # a question without '?': kept, '?' added
        "7. How fast did revenue grow in fiscal 2024?",        # beyond the limit of 3
    ])
    f = QuestionFilter()
    kept = f.keep(parse_questions(answer), CHUNK, limit=3)
    assert kept == ["What did NVIDIA invent in 1999?", "Why did data center demand grow?",
                    "How fast did revenue grow in fiscal 2024?"][:3]
    assert dict(f.dropped) == {"duplicate": 1, "not_question": 1, "copied": 1, "empty": 1}
    assert f.kept == 3


def test_limit_counts_extra_questions():
    f = QuestionFilter()
    kept = f.keep(["What is a GPU?", "Who invented the GPU?", "When was the GPU invented?"], CHUNK, limit=2)
    assert len(kept) == 2 and f.dropped["extra"] == 1


def test_duplicates_across_chunks_only_when_asked():
    shared = QuestionFilter(across_chunks=True)
    assert shared.keep(["What is a GPU?"], CHUNK) == ["What is a GPU?"]
    assert shared.keep(["What is a GPU?"], "another chunk") == [] and shared.dropped["duplicate"] == 1
    local = QuestionFilter()
    assert local.keep(["What is a GPU?"], CHUNK) == local.keep(["What is a GPU?"], "x") == ["What is a GPU?"]


def test_copy_and_question_tests():
    assert is_copy("NVIDIA invented the GPU in 1999", CHUNK)
    assert is_copy("Was revenue $60.9 billion, up 126% from a year ago, driven by data center?", CHUNK)
    assert not is_copy("What did NVIDIA invent in 1999?", CHUNK)
    assert is_question("Is the GPU new") and is_question("Revenue in 2024?")
    assert not is_question("Revenue in 2024.") and not is_question("Why?") and not is_question("x" * 600 + "?")


def test_garbage_output_never_raises():
    rng = random.Random(0)
    alphabet = "ab?1.-*)\n \t\r\"“”:Q#"
    for _ in range(300):
        answer = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80)))
        QuestionFilter().keep(parse_questions(answer), CHUNK, limit=3)


def test_ict_takes_a_sentence_and_mostly_removes_it():
    text = ("The company sells chips. Revenue grew strongly in 2024. Data centers bought most of them. "
            "Gaming revenue was flat.")
    assert len(sentences(text)) == 4
    removed = 0
    for seed in range(50):
        (query, positive), = ict_pairs(text, 1, random.Random(seed))
        assert query in sentences(text)
        removed += query not in positive
    assert 35 <= removed < 50  # removed 90 % of the time, kept sometimes
    pairs = ict_pairs(text, 3, random.Random(1))
    assert len({q for q, _ in pairs}) == 3


def test_ict_crops_a_one_sentence_chunk_and_skips_tiny_ones():
    one = "a single long sentence about revenue growth in the data center segment during fiscal 2024"
    pairs = ict_pairs(one, 2, random.Random(0))
    assert pairs and all(q in one and p == one and len(q.split()) >= 4 for q, p in pairs)
    assert ict_pairs("Too short.", 3, random.Random(0)) == []
