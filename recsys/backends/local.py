"""The local engine as mixer candidate sources: a fitted recipe, or the polls of the
people a user follows."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from recsys.recipes.base import Recipe, ScoredItem


class LocalRecipeSource:
    """A fitted :class:`Recipe` (or anything with its ``recommend``) as a candidate source.

    The request's filter arrives compiled as ``allow`` (a predicate, or a
    :class:`~recsys.recipes.base.PollMask` that the recipe applies to its whole catalog
    at once); the filter's name is only for remote backends and is ignored here.
    """

    def __init__(self, name: str, recipe: Recipe | Callable[[], Recipe]):
        self.name = name
        # A callable lets the serving side hot-swap the model between requests.
        self._recipe = recipe if callable(recipe) and not hasattr(recipe, "recommend") else (
            lambda: recipe)

    def candidates(self, user_id: str, n: int, *, exclude: Collection[str] = (),
                   allow: Callable[[str], bool] | None = None,
                   filter_name: str | None = None,
                   filter_values: dict[str, str] | None = None) -> list[ScoredItem]:
        return self._recipe().recommend(user_id, n, exclude=exclude, allow=allow)


class InNetworkSource:
    """Polls authored by the people a user follows, newest first, ties by poll id (off
    by default).

    ``followees`` comes from the follower graph, ``polls_by_authors`` from the catalog
    (every poll the store holds); the gateway wires them (recsys does not import graph).
    ``polls_by_authors`` returns (poll id, created at) pairs.
    """

    name = "in-network"

    def __init__(self, followees: Callable[[str], Iterable[str]],
                 polls_by_authors: Callable[[list[str], int], list[tuple[str, float]]]):
        self.followees = followees
        self.polls_by_authors = polls_by_authors

    def candidates(self, user_id: str, n: int, *, exclude: Collection[str] = (),
                   allow: Callable[[str], bool] | None = None,
                   filter_name: str | None = None,
                   filter_values: dict[str, str] | None = None) -> list[ScoredItem]:
        authors = list(self.followees(user_id))
        if not authors:
            return []
        polls = self.polls_by_authors(authors, n + len(exclude))
        out = []
        # Ties in creation time go to the smaller poll id: the provider's order may come
        # from a set, and a feed must not depend on the process's hash seed.
        for poll_id, created_at in sorted(polls, key=lambda p: (-p[1], p[0])):
            if poll_id in exclude or (allow is not None and not allow(poll_id)):
                continue
            out.append(ScoredItem(poll_id, float(created_at)))
            if len(out) == n:
                break
        return out
