"""User-Personalization's serving path at feed cost: a filter given as a catalog mask
ranks exactly as the same filter given as a predicate, and polls ingested one by one
while serving rank as they would in a model that loaded them from disk."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.events import Interaction
from recsys.recipes.base import PollMask
from recsys.recipes.popularity_count import PopularityCount
from recsys.recipes.trending_now import TrendingNow
from recsys.recipes.user_personalization import UserPersonalization
from tests.recsys.test_user_personalization import DAY, NEWEST, _fresh, _world

USERS = ("football-fan-3", "baking-fan-1", "pets-fan-0", "new-baker", None, "stranger")


class _Catalog:
    """A catalog in its own row order (not the recipe's), append-only like the real one."""

    def __init__(self, ids: list[str]) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.add(ids)

    def add(self, ids: list[str]) -> None:
        for i in ids:
            self.index[i] = len(self.ids)
            self.ids.append(i)

    def mask(self, keep) -> PollMask:
        return PollMask(np.fromiter((keep(i) for i in self.ids), bool, len(self.ids)),
                        self.ids, self.index)


def _poll(text: str, created: int) -> dict:
    return {"CATEGORY": "GENERAL", "AUTHOR_ID": "a", "CREATION_TIMESTAMP": created,
            "QUESTION": text}


@pytest.fixture()
def model() -> UserPersonalization:
    return _fresh(_world(), exploration_weight=0.3)


def _selective(item_id: str) -> bool:
    return item_id.endswith("7") or item_id.startswith("fresh")


def test_a_mask_ranks_exactly_as_the_same_filter_as_a_predicate(model) -> None:
    # Rows in another order than the recipe's index, one poll the recipe lacks, and
    # two recipe polls the catalog has not seen (allowed by both forms).
    catalog = _Catalog(["catalog-only"] + [i for i in reversed(model.item_ids_)
                                           if i not in ("pets-4", "baking-9")])
    # Selective filters, one keeping most polls, one keeping none.
    for keep in (_selective, lambda i: i.startswith("pets"), lambda i: "pets" not in i,
                 lambda i: False):
        mask = catalog.mask(keep)
        assert mask("pets-4") and mask("baking-9")  # unknown to the catalog: allowed
        for user in USERS:
            for n in (1, 5, 40):
                exclude = {"pets-1", "football-7"}
                by_mask = model.recommend(user, n, exclude=exclude, allow=mask)
                assert by_mask == model.recommend(user, n, exclude=exclude, allow=mask.__call__)
                assert all(mask(r.item_id) for r in by_mask)
    assert len(model.recommend("pets-fan-0", 3, allow=catalog.mask(_selective))) == 3


def test_a_mask_stays_right_as_the_catalog_and_the_recipe_grow(model) -> None:
    catalog = _Catalog(list(reversed(model.item_ids_)))
    assert model.recommend("baking-fan-2", 10, allow=catalog.mask(_selective))
    # A poll reaches the recipe first (ingested by this worker), the catalog later; the
    # other reaches the catalog first.
    model.add_items({"fresh-1": _poll("bread flour oven", NEWEST + 10)})
    for step in (lambda: None, lambda: catalog.add(["fresh-1", "fresh-2"]),
                 lambda: model.add_items({"fresh-2": _poll("dough yeast", NEWEST + 20)})):
        step()
        for keep in (_selective, lambda i: not i.startswith("fresh-1")):
            mask = catalog.mask(keep)
            for user in USERS:
                assert model.recommend(user, 30, allow=mask) == model.recommend(
                    user, 30, allow=mask.__call__)
    mask = catalog.mask(lambda i: i.startswith("fresh"))
    assert {r.item_id for r in model.recommend("baking-fan-2", 5, allow=mask)} == {
        "fresh-1", "fresh-2"}


def test_polls_ingested_one_by_one_rank_as_after_a_reload(model, tmp_path) -> None:
    texts = ["bread flour oven", "dog puppy vet", "striker goal penalty", "cake dough",
             "kitten cat leash", "league match stadium"]
    for k, text in enumerate(texts * 3):
        # Mostly newer than every poll (appended), one backdated (rebuild), one repeated
        # with new metadata (a known poll updated).
        created = NEWEST - 40 * DAY if k == 7 else NEWEST + 60 * k
        model.add_items({f"new-{k}": _poll(text, created)})
        if k == 9:
            model.add_items({"new-3": _poll("sourdough yeast flour", NEWEST + 180)})
        if k == 12:  # a batch, newest first: the creation order is not the arrival order
            model.add_items({f"batch-{j}": _poll(texts[t], NEWEST + 60 * k + 10 - j)
                             for j, t in enumerate((0, 3, 2, 1))})
        if k % 4 == 0:
            model.observe([Interaction(f"voter-{k}", f"new-{k}", "HUNCH", NEWEST + 60 * k)])
    model.save(tmp_path)
    loaded = UserPersonalization.load(tmp_path)
    for user in USERS + ("voter-4",):
        live = model.recommend(user, 40)
        again = loaded.recommend(user, 40)
        assert [r.item_id for r in live] == [r.item_id for r in again]
        assert [r.score for r in live] == pytest.approx([r.score for r in again], rel=1e-4)
    # The ingested polls are recommendable, a baking one to a baker before the others.
    baker = [r.item_id for r in model.recommend("baking-fan-1", 200)
             if r.item_id.startswith(("new", "batch"))]
    assert set(baker) == {f"new-{k}" for k in range(18)} | {f"batch-{j}" for j in range(4)}


@pytest.mark.parametrize("recipe", [PopularityCount, TrendingNow])
def test_popular_and_trending_lists_are_the_same_with_a_mask(recipe) -> None:
    world = _world()
    fitted = recipe().fit(world)
    polls = sorted({e.item_id for e in world.interactions})
    catalog = _Catalog(["catalog-only"] + polls[::-1][5:])  # five polls it lacks
    for keep in (_selective, lambda i: i.startswith("baking"), lambda i: False):
        mask = catalog.mask(keep)
        for n in (1, 10, 60):
            by_mask = fitted.recommend(None, n, exclude={"baking-3"}, allow=mask)
            assert by_mask == fitted.recommend(None, n, exclude={"baking-3"},
                                               allow=mask.__call__)
            assert all(mask(r.item_id) for r in by_mask)
    fitted.observe([Interaction("u", "fresh-9", "HUNCH", NEWEST + 60)])  # a new poll
    catalog.add(["fresh-9"])
    mask = catalog.mask(lambda i: i.startswith("fresh"))
    assert fitted.recommend(None, 5, allow=mask) == fitted.recommend(None, 5,
                                                                      allow=mask.__call__)


def test_a_blend_without_affinity_weights_ranks_as_its_learned_formula(tmp_path) -> None:
    # The blend learned on the demo data weighs only popularity, segment and age: the
    # serving shortcut must rank exactly as the blend's own formula (used to learn it).
    model = _fresh(_world())
    for f in ("collaborative", "cold_collaborative", "content", "cold_content", "item_item",
              "item_item_recent", "sequence", "walk"):
        model.blend_[f] = 0.0
    model.blend_["popularity"], model.blend_["segment"] = 0.7, 0.4
    model.save(tmp_path)
    loaded = UserPersonalization.load(tmp_path)
    for user in ("football-fan-3", "new-baker", "pets-fan-0", None):
        t_ref = loaded._reference_time(user, None)
        formula = loaded._combine(*loaded._features(user, t_ref), user)
        seen = set(loaded.interacted_.get(user, np.zeros(0, int)).tolist()) if user else set()
        best = [i for i in np.argsort(-formula, kind="stable") if i not in seen][:20]
        recs = loaded.recommend(user, 20)
        assert [r.item_id for r in recs] == [loaded.item_ids_[i] for i in best]
        assert [r.score for r in recs] == pytest.approx(formula[best].tolist(), rel=1e-5)


@pytest.mark.parametrize("popularity", [0.0, 0.7])
def test_scores_tied_at_the_cut_rank_as_a_sort_over_the_catalog(tmp_path, popularity) -> None:
    # A request ranks only the head of the catalog. Where scores tie across the head's
    # cut (every score, with no weight at all; whole runs of polls with the same vote
    # count, with popularity alone), the polls that make the page must still be the
    # lowest poll ids among the tied, as a stable sort of every poll would give.
    model = _fresh(_world())
    for f in model.blend_:
        model.blend_[f] = 0.0
    model.blend_["popularity"] = popularity
    model.age_weights_[:] = 0
    model.save(tmp_path)
    loaded = UserPersonalization.load(tmp_path)
    for user in (None, "football-fan-3", "new-baker"):
        formula = loaded._combine(*loaded._features(user, loaded._reference_time(user, None)), user)
        assert len(np.unique(formula)) < len(formula) // 4  # the ties this is about
        seen = set(loaded.interacted_.get(user, np.zeros(0, int)).tolist()) if user else set()
        for n in (1, 10, 25):
            assert len(formula) > max(2 * n, n + 50)  # the head is cut inside the catalog
            best = [i for i in np.argsort(-formula, kind="stable") if i not in seen][:n]
            assert [r.item_id for r in loaded.recommend(user, n)] == [
                loaded.item_ids_[i] for i in best]
        # A selective filter ranks only the polls it keeps: the head is cut among them
        # (too few here for recommend to cut them, so the cut is asked for directly).
        serving = loaded._final_scores(user, None)  # serving (creation) order
        positions = np.flatnonzero([loaded.item_ids_[i][-1] in "1470" and not
                                    loaded.item_ids_[i].startswith("football")
                                    for i in loaded._order])
        head = loaded._head(serving[positions], 8, positions)
        polls = loaded._order[positions[head]]
        want = [i for i in np.argsort(-formula, kind="stable")
                if i in set(loaded._order[positions].tolist())][:8]
        assert sorted(polls.tolist()) == sorted(want)
