"""Pluggable text encoders: turn a poll's textual fields into a dense vector.

User-Personalization scores cold polls (few or no votes yet) from what they say. The
encoder is a small protocol so a deployment can trade the light default (TF-IDF reduced
by truncated SVD: no downloads, trains in seconds) for sentence embeddings when a local
model is installed. Text is cleaned the way Personalize treats textual fields (markup
and extra whitespace stripped, cut at 20,000 characters) before it is encoded.

Encoders persist themselves to a directory as JSON + ``.npz`` (no pickle), so a saved
model can encode polls added after training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from recsys.datasets import clean_text
from recsys.errors import HunchError

__all__ = [
    "TextEncoder",
    "TfidfSvdEncoder",
    "SentenceEmbeddingEncoder",
    "TextEncoderUnavailable",
    "TextEncoderNotFitted",
    "clean_text",
    "load_encoder",
]

ENCODER_FILE = "encoder.json"
_ARRAYS_FILE = "encoder.npz"

# 32 dimensions hold the topic signal of short poll texts (the demo's 16 topics fit
# easily) while keeping the per-request dot product over 50k polls cheap: the serving
# matrix is read whole on every request, so each dimension costs latency.
DEFAULT_TEXT_DIMENSIONS = 32
# Caps the vocabulary so memory and the saved JSON stay small on large catalogs.
DEFAULT_MAX_VOCABULARY = 50_000
# A term seen in a single poll cannot link two polls; dropping it removes noise.
DEFAULT_MIN_DOCUMENT_FREQUENCY = 2


class TextEncoderUnavailable(HunchError):
    """The chosen text encoder cannot run here (missing package or local model)."""


class TextEncoderNotFitted(HunchError):
    """``transform`` was called before ``fit``."""


@runtime_checkable
class TextEncoder(Protocol):
    """Turns texts into rows of a dense float32 matrix (one row per text)."""

    kind: str

    def fit(self, texts: Sequence[str]) -> Self: ...

    def transform(self, texts: Sequence[str]) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Self: ...


def _clean_all(texts: Sequence[str | None]) -> list[str]:
    return [clean_text(t) if t else "" for t in texts]


class TfidfSvdEncoder:
    """TF-IDF (unigrams + bigrams, sublinear tf) reduced by truncated SVD (LSA).

    A row's length is the share of the text's (unit) TF-IDF vector the topics explain,
    so a dot product is a cosine similarity weighed by how well both texts are
    understood; an empty text, or one of words no topic knows, encodes to (nearly) the
    zero vector: it says nothing, so it should match nothing.
    """

    kind = "tfidf-svd"

    def __init__(
        self,
        n_components: int = DEFAULT_TEXT_DIMENSIONS,
        *,
        max_features: int = DEFAULT_MAX_VOCABULARY,
        min_df: int = DEFAULT_MIN_DOCUMENT_FREQUENCY,
        random_state: int = 0,
    ) -> None:
        self.n_components = n_components
        self.max_features = max_features
        self.min_df = min_df
        self.random_state = random_state

    def _vectorizer(self) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(
            max_features=self.max_features,
            min_df=self.min_df,
            # Unigrams: bigrams doubled fitting time on 50k polls for little topic signal.
            ngram_range=(1, 1),
            sublinear_tf=True,
            strip_accents="unicode",
            dtype=np.float32,
        )

    def fit(self, texts: Sequence[str]) -> Self:
        self.fit_transform(texts)
        return self

    def fit_transform(self, texts: Sequence[str]) -> np.ndarray:
        """Fit on ``texts`` and return their vectors, reading the texts only once."""
        from sklearn.decomposition import TruncatedSVD

        cleaned = _clean_all(texts)
        vectorizer = self._vectorizer()
        try:
            matrix = vectorizer.fit_transform(cleaned)
        except ValueError:
            # Too few distinct words for min_df (tiny catalogs): keep every term.
            vectorizer.set_params(min_df=1)
            try:
                matrix = vectorizer.fit_transform(cleaned)
            except ValueError:
                # No words at all: an encoder that maps everything to zero.
                self.vocabulary_: dict[str, int] = {}
                self.idf_ = np.zeros(0, dtype=np.float32)
                self.components_ = np.zeros((0, 0), dtype=np.float32)
                return np.zeros((len(texts), 1), dtype=np.float32)
        self.vocabulary_ = {term: int(i) for term, i in vectorizer.vocabulary_.items()}
        self.idf_ = vectorizer.idf_.astype(np.float32)
        # TruncatedSVD needs fewer components than terms and documents.
        k = max(1, min(self.n_components, matrix.shape[1] - 1, matrix.shape[0] - 1))
        if matrix.shape[1] < 2 or matrix.shape[0] < 2:
            self.components_ = np.eye(matrix.shape[1], dtype=np.float32)
        else:
            svd = TruncatedSVD(n_components=k, random_state=self.random_state)
            svd.fit(matrix)
            self.components_ = svd.components_.astype(np.float32)
        self._fitted_vectorizer = vectorizer
        return self._project(matrix)

    def _project(self, tfidf: Any) -> np.ndarray:
        # The TF-IDF rows have unit length, so a projection's length is the share of the
        # text the topics explain. Not scaled back up: stretched to unit length, the few
        # stray words of a text no topic explains (most artist names on HetRec Last.fm:
        # median length 0.02) pointed as firmly as a poll squarely on a topic.
        return np.asarray(tfidf @ self.components_.T, dtype=np.float32)

    def _restored_vectorizer(self) -> Any:
        vectorizer = getattr(self, "_fitted_vectorizer", None)
        if vectorizer is None:
            vectorizer = self._vectorizer()
            vectorizer.vocabulary_ = self.vocabulary_
            vectorizer.idf_ = self.idf_
            self._fitted_vectorizer = vectorizer
        return vectorizer

    @property
    def dimensions(self) -> int:
        return int(self.components_.shape[0])

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        if not hasattr(self, "components_"):
            raise TextEncoderNotFitted("TfidfSvdEncoder: call fit(texts) before transform")
        if not self.vocabulary_:
            return np.zeros((len(texts), max(1, self.dimensions)), dtype=np.float32)
        return self._project(self._restored_vectorizer().transform(_clean_all(texts)))

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "kind": self.kind,
            "n_components": self.n_components,
            "max_features": self.max_features,
            "min_df": self.min_df,
            "random_state": self.random_state,
            "vocabulary": self.vocabulary_,
        }
        (directory / ENCODER_FILE).write_text(json.dumps(state))
        np.savez(directory / _ARRAYS_FILE, idf=self.idf_, components=self.components_)

    @classmethod
    def load(cls, directory: Path) -> Self:
        directory = Path(directory)
        state = json.loads((directory / ENCODER_FILE).read_text())
        encoder = cls(
            state["n_components"],
            max_features=state["max_features"],
            min_df=state["min_df"],
            random_state=state["random_state"],
        )
        with np.load(directory / _ARRAYS_FILE) as arrays:
            encoder.idf_ = arrays["idf"]
            encoder.components_ = arrays["components"]
        encoder.vocabulary_ = state["vocabulary"]
        if encoder.vocabulary_:
            # Pay for importing scikit-learn and rebuilding the vectorizer here, when a
            # model loads, not in the first poll ingested while serving: that took 2-5 s
            # under the model's lock, and every feed request of the worker waited.
            encoder.transform(["warm up"])
        return encoder


class SentenceEmbeddingEncoder:
    """Sentence embeddings from a locally installed ``sentence-transformers`` model.

    Runs offline only: the model must already be on disk (a path, or a name in the
    local Hugging Face cache). Nothing is downloaded, so training never blocks on the
    network; a missing package or model raises :class:`TextEncoderUnavailable`.
    """

    kind = "sentence-embedding"

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, batch_size: int = 64) -> None:
        self.model = model
        self.batch_size = batch_size
        self._model: Any = None

    def _loaded(self) -> Any:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise TextEncoderUnavailable(
                    "SentenceEmbeddingEncoder needs the 'sentence-transformers' package: "
                    "pip install sentence-transformers, or use TfidfSvdEncoder (default)"
                ) from exc
            try:
                self._model = SentenceTransformer(self.model, local_files_only=True)
            except Exception as exc:  # the library raises several unrelated types
                raise TextEncoderUnavailable(
                    f"sentence-transformers model {self.model!r} is not available offline: "
                    "download it once to a local path and pass that path as `model`"
                ) from exc
        return self._model

    def fit(self, texts: Sequence[str]) -> Self:
        self._loaded()  # pretrained: fitting only checks the model can run
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._loaded().encode(
            _clean_all(texts), batch_size=self.batch_size, normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {"kind": self.kind, "model": self.model, "batch_size": self.batch_size}
        (directory / ENCODER_FILE).write_text(json.dumps(state))

    @classmethod
    def load(cls, directory: Path) -> Self:
        state = json.loads((Path(directory) / ENCODER_FILE).read_text())
        return cls(state["model"], batch_size=state["batch_size"])


_ENCODERS: dict[str, type] = {
    TfidfSvdEncoder.kind: TfidfSvdEncoder,
    SentenceEmbeddingEncoder.kind: SentenceEmbeddingEncoder,
}


def load_encoder(directory: Path) -> TextEncoder:
    """The encoder saved in ``directory`` by any encoder's ``save``."""
    path = Path(directory) / ENCODER_FILE
    if not path.exists():
        raise TextEncoderUnavailable(f"{path} is missing: the directory holds no saved encoder")
    kind = json.loads(path.read_text()).get("kind")
    if kind not in _ENCODERS:
        raise TextEncoderUnavailable(
            f"{path}: unknown encoder kind {kind!r}; known: {sorted(_ENCODERS)}"
        )
    return _ENCODERS[kind].load(directory)
