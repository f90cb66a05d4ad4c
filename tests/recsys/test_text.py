"""Text encoders: similar polls encode close together, state survives save/load."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.schemas import MAX_TEXTUAL_LENGTH
from recsys.text import (
    SentenceEmbeddingEncoder,
    TextEncoder,
    TextEncoderNotFitted,
    TextEncoderUnavailable,
    TfidfSvdEncoder,
    clean_text,
    load_encoder,
)

POLLS = [
    "Who wins the football match tonight, home team or away team?",
    "Best football striker of the season: who scores more goals?",
    "Will the football league final go to penalties?",
    "Sourdough or rye: which bread do you bake at home?",
    "How long do you let bread dough rise before baking?",
    "Best flour for baking a soft bread loaf?",
    "Do you prefer cats or dogs as pets?",
    "Should dogs sleep in the bed with their owners?",
]


def test_similar_polls_are_closer_than_unrelated_ones() -> None:
    encoder = TfidfSvdEncoder(n_components=4).fit(POLLS)
    assert isinstance(encoder, TextEncoder)
    football, bread = encoder.transform(
        ["football match goals tonight", "baking bread with flour"]
    )
    polls = encoder.transform(POLLS)
    assert (polls[:3] @ football).mean() > (polls[3:6] @ football).mean()
    assert (polls[3:6] @ bread).mean() > (polls[:3] @ bread).mean()


def test_empty_text_encodes_to_zero_and_markup_is_ignored() -> None:
    encoder = TfidfSvdEncoder(n_components=4).fit(POLLS)
    empty, plain, marked = encoder.transform(
        ["", "bread dough baking", "<p><b>bread</b>   dough\n\n baking</p>"]
    )
    assert not empty.any()
    np.testing.assert_allclose(plain, marked, atol=1e-6)


def test_clean_text_strips_markup_whitespace_and_cuts_long_text() -> None:
    assert clean_text("<div>Hello   <i>world</i></div>\n") == "Hello world"
    assert len(clean_text("word " * 10_000)) == MAX_TEXTUAL_LENGTH


def test_transform_before_fit_is_a_typed_error() -> None:
    with pytest.raises(TextEncoderNotFitted, match="fit"):
        TfidfSvdEncoder().transform(["anything"])


def test_save_and_load_give_identical_vectors(tmp_path) -> None:
    encoder = TfidfSvdEncoder(n_components=4).fit(POLLS)
    encoder.save(tmp_path)
    loaded = load_encoder(tmp_path)
    texts = ["football penalties tonight", "cats and dogs", "unknownword"]
    np.testing.assert_allclose(encoder.transform(texts), loaded.transform(texts), atol=1e-6)


def test_tiny_catalogs_still_fit() -> None:
    encoder = TfidfSvdEncoder().fit(["one poll", "another poll"])
    assert encoder.transform(["poll"]).shape[0] == 1
    blank = TfidfSvdEncoder().fit(["", ""])
    assert not blank.transform(["anything"]).any()


def test_sentence_encoder_without_package_or_model_is_a_clear_typed_error() -> None:
    encoder = SentenceEmbeddingEncoder(model="/nonexistent/model")
    with pytest.raises(TextEncoderUnavailable, match="sentence-transformers"):
        encoder.fit(POLLS)


def test_sentence_encoder_runs_when_installed() -> None:
    pytest.importorskip("sentence_transformers")
    encoder = SentenceEmbeddingEncoder()
    try:
        encoder.fit(POLLS)
    except TextEncoderUnavailable:
        pytest.skip("no local sentence-transformers model")
    vectors = encoder.transform(POLLS[:2])
    assert vectors.shape[0] == 2 and np.isfinite(vectors).all()


def test_fit_transform_gives_the_vectors_transform_gives() -> None:
    encoder = TfidfSvdEncoder(n_components=4)
    fitted_vectors = encoder.fit_transform(POLLS)
    np.testing.assert_allclose(fitted_vectors, encoder.transform(POLLS), atol=1e-5)
    assert TfidfSvdEncoder().fit_transform(["", ""]).shape[0] == 2
