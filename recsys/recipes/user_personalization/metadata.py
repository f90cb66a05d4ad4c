"""What the catalog says about each poll, shared by the components: its CATEGORY and
AUTHOR_ID (one-hot, each field's values sharing one unit of weight) and its text through
a pluggable encoder (recsys/text.py).

Two products: the side features (text + every categorical column) that the
collaborative component's ridge maps into the factor space, and the dense content
vectors (text + the few-valued fields only, at most unit length) that the content
affinity and the item-item component's cold-poll neighbours compare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from recsys.recipes.user_personalization.components.segments import categorical_values
from recsys.recipes.user_personalization.settings import CONTENT_MAX_FIELD_VALUES
from recsys.text import TfidfSvdEncoder

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization


def fit(up: UserPersonalization, items: Mapping[str, Mapping[str, Any]]) -> sp.csr_matrix:
    """Fit the encoder and the categorical index, set ``up.content_``; return the side
    features of every poll (poll-id order)."""
    up.categorical_index_ = {}
    # Each poll's keys once: the index and the matrix both read them (50k polls: 0.3 s).
    keys = {item_id: item_keys(up, meta) for item_id, meta in items.items()}
    for poll_keys in keys.values():
        for key in poll_keys:
            up.categorical_index_.setdefault(key, len(up.categorical_index_))
    texts = item_texts(up, items, up.item_ids_)
    up.encoder_ = None
    text = np.zeros((len(texts), 0), np.float32)
    if up.use_text and up.text_fields:
        encoder = up.text_encoder or TfidfSvdEncoder(random_state=up.random_state)
        # Polls known only from events have no text; they must not shape the encoder.
        described = np.fromiter((i in items for i in up.item_ids_), bool, len(up.item_ids_))
        if isinstance(encoder, TfidfSvdEncoder) and described.all():
            encoded = encoder.fit_transform(texts)  # one pass over the texts
        else:
            encoder.fit([t for t, d in zip(texts, described) if d])
            encoded = encoder.transform(texts)
        # With no text the encoder can read (none at all, or no word in two polls) its
        # one zero column gave every poll the same "text", and the item-item component
        # built all-zero content neighbours that shrank cold polls' scores to nothing.
        # Without words, UP is the model use_text=False fits.
        if np.any(encoded):
            up.encoder_, text = encoder, encoded
    categorical = categorical_matrix(up, items, up.item_ids_, keys)
    up.content_ = content(up, text, categorical)
    return side_features(text, categorical)


def item_texts(up: UserPersonalization, items: Mapping[str, Mapping[str, Any]],
               ids: Sequence[str]) -> list[str]:
    texts = []
    for item_id in ids:
        meta = items.get(item_id, {})
        parts = [str(meta[f]) for f in up.text_fields if meta.get(f)]
        texts.append(" \n ".join(parts))
    return texts


def item_keys(up: UserPersonalization, meta: Mapping[str, Any]) -> list[str]:
    return [f"{field}={v}" for field in up.item_categorical_fields
            for v in categorical_values(meta.get(field))]


def encode(up: UserPersonalization, items: Mapping[str, Mapping[str, Any]],
           ids: Sequence[str]) -> np.ndarray:
    if up.encoder_ is None:
        return np.zeros((len(ids), 0), np.float32)
    return up.encoder_.transform(item_texts(up, items, ids))


def categorical_matrix(up: UserPersonalization, items: Mapping[str, Mapping[str, Any]],
                       ids: Sequence[str], keys: Mapping[str, list[str]] | None = None
                       ) -> sp.csr_matrix:
    """Polls ``ids`` x the categorical index; ``keys``: each item's :func:`item_keys`
    when the caller has them."""
    rows, cols = [], []
    for r, item_id in enumerate(ids):
        known = None if keys is None else keys.get(item_id)
        for key in (item_keys(up, items.get(item_id, {})) if known is None else known):
            c = up.categorical_index_.get(key)
            if c is not None:
                rows.append(r)
                cols.append(c)
    data = np.ones(len(rows), np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(len(ids), len(up.categorical_index_)))
    # Each field's values share one unit of weight so multi-valued polls don't dominate.
    norms = np.sqrt(np.asarray(matrix.sum(1)).ravel())
    norms[norms == 0] = 1
    return sp.csr_matrix(sp.diags(1 / norms) @ matrix)


def side_features(text: np.ndarray, categorical: sp.csr_matrix) -> sp.csr_matrix:
    return sp.hstack([sp.csr_matrix(text), categorical], format="csr", dtype=np.float32)


def content_columns(up: UserPersonalization) -> np.ndarray:
    # Only fields with few values (CATEGORY, not AUTHOR_ID) describe a poll's topic;
    # many-valued ones would make the dense content matrix wide and say little.
    per_field: dict[str, list[int]] = {}
    for key, col in up.categorical_index_.items():
        per_field.setdefault(key.split("=", 1)[0], []).append(col)
    cols = [c for cs in per_field.values() if len(cs) <= CONTENT_MAX_FIELD_VALUES for c in cs]
    return np.array(sorted(cols), np.int64)


def content(up: UserPersonalization, text: np.ndarray, categorical: sp.csr_matrix
            ) -> np.ndarray:
    # Text and topic categories together describe what a user's interests look like.
    # The columns are fixed once fitted (ingest adds no category values); worked out
    # again per call they were half the cost of ingesting one poll at 50k polls.
    cached = getattr(up, "_content_cols", None)
    if cached is None or cached[0] is not up.categorical_index_ or cached[1] != len(
            up.categorical_index_):
        cached = (up.categorical_index_, len(up.categorical_index_), content_columns(up))
        up._content_cols = cached
    topics = categorical[:, cached[2]].toarray()
    # A poll's topic categories are a whole description: unit length when it has any.
    norms = np.linalg.norm(topics, axis=1, keepdims=True)
    np.divide(topics, norms, out=topics, where=norms > 0)
    # Text keeps its length (the share of its words the encoder's topics explain), so a
    # text they barely explain resembles nothing much. Each part the catalog has weighs
    # one unit: two polls alike in everything they say have similarity 1.
    parts = int(text.shape[1] > 0) + int(topics.shape[1] > 0)
    dense = np.hstack([text, topics]).astype(np.float32)
    return dense / np.float32(np.sqrt(max(parts, 1)))
