"""up_history_twins.py DATASET [always|switched] [COLUMNS]: UP whose blend columns get
history-length twins (docs/public-data.md, "UP's own settings on development data").

A twin is an affinity column times z = log1p(the user's polls) - log1p(10), learned
beside the column (not floored), so a column's weight becomes w + t * z: a user's
history length can change which column to trust. `always`: the twins are in the blend;
`switched` (default): fit decides, on a 2-fold split of the validation users, whether a
blend learned with them ranks the held-out half's whole catalog better (NDCG@10 of their
targets) than one without; then the blend is learned as usual, with or without. COLUMNS:
comma-separated affinities to twin (default all seven below).

A study subclass: serving goes through the blend's formula (`_combine` of `_features`)
instead of the fused product, so it is slow and it changes nothing in the product.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np

from _common import evaluate_up

ALL_TWINS = ("collaborative", "content", "item_item", "item_item_recent", "sequence",
             "walk", "segment")


def study_class(twinned: tuple[str, ...]):
    from recsys.recipes.user_personalization import UserPersonalization

    class HistoryTwins(UserPersonalization):
        twins_on = False

        def _base_features(self) -> tuple[str, ...]:
            return super()._blend_features()

        def _blend_features(self) -> tuple[str, ...]:
            base = self._base_features()
            if not self.twins_on:
                return base
            return base + tuple(f"{n}_x_history" for n in base if n in twinned)

        def _features(self, user_id, t_ref):
            features, ages = super()._features(user_id, t_ref)
            if not self.twins_on:
                return features, ages
            seen = self.interacted_.get(user_id) if user_id is not None else None
            z = np.log1p(0 if seen is None else len(seen)) - np.log1p(10)
            twins = [features[j] * z for j, n in enumerate(self._base_features())
                     if n in twinned]
            return np.vstack([features, *twins]).astype(np.float32), ages

        def _serving_scores(self, user_id, t_ref):
            for name in self._blend_features():
                self.blend_.setdefault(name, 0.0)
            return self._combine(*self._features(user_id, t_ref))[self._order]

    return HistoryTwins


def validation_users(up, users, items, is_target):
    """Per validation user as blend.learn draws them: (pool rows, labels, id, targets)."""
    from recsys.recipes.user_personalization import blend
    from recsys.recipes.user_personalization.components import Recency

    rng = np.random.default_rng(up.random_state + 1)
    targets: dict[int, set[int]] = {}
    for u, i in zip(users[is_target].tolist(), items[is_target].tolist()):
        targets.setdefault(u, set()).add(i)
    out = []
    for u, relevant in targets.items():
        user_id = up.user_ids_[u]
        recent = up.recent_.get(user_id)
        if recent is None:
            continue
        features, ages = up._features(user_id, float(recent[2][-1]))
        rel = np.fromiter(relevant, np.int64)
        rel = rel[~np.isin(rel, up.interacted_[user_id])]
        if not len(rel):
            continue
        pool = blend.candidate_pool(features, up.interacted_[user_id], rng)
        hit = np.isin(pool, rel)
        if not hit.any():
            continue
        negatives = rng.choice(pool[~hit], size=min(blend.POOL_NEGATIVES, int((~hit).sum())),
                               replace=False)
        chosen = np.concatenate([pool[hit], negatives])
        rows = np.hstack([features[:, chosen].T,
                          Recency.design(np.maximum(ages[chosen], 1), up._recency_on)])
        out.append((rows, np.r_[np.ones(int(hit.sum())), np.zeros(len(negatives))],
                    user_id, rel))
    return out


def held_out_ndcg(up, drawn, n_columns: int) -> float:
    """Learn on one half of the validation users, rank the other half's whole catalog."""
    from sklearn.linear_model import LogisticRegression

    from recsys.recipes.user_personalization import blend
    from recsys.recipes.user_personalization.components import Recency

    from recsys.evaluation.metrics import ndcg_at_k

    order = np.random.default_rng(0).permutation(len(drawn))
    halves = (order[::2], order[1::2])
    scores = []
    for learn_on, rank_for in ((0, 1), (1, 0)):
        x = np.vstack([drawn[k][0] for k in halves[learn_on]])
        y = np.concatenate([drawn[k][1] for k in halves[learn_on]])
        scale = x[:, :n_columns].std(0)
        scale[scale == 0] = 1.0
        x[:, :n_columns] /= scale
        model = LogisticRegression(C=blend.BLEND_INVERSE_L2,
                                   max_iter=blend.BLEND_MAX_ITERATIONS).fit(x, y)
        for k in halves[rank_for]:
            _, _, user_id, relevant = drawn[k]
            features, ages = up._features(user_id, float(up.recent_[user_id][2][-1]))
            design = np.hstack([features.T, Recency.design(np.maximum(ages, 1),
                                                           up._recency_on)]).astype(float)
            design[:, :n_columns] /= scale
            score = model.decision_function(design)
            score[up.interacted_[user_id]] = -np.inf
            top = np.argpartition(-score, 10)[:10]
            top = top[np.argsort(-score[top], kind="stable")]
            scores.append(ndcg_at_k(top.tolist(), set(relevant.tolist()), 10))
    return float(np.mean(scores))


def switch_in_fit() -> None:
    from recsys.recipes.user_personalization import blend

    learn = blend.learn

    def choosing_learn(up, users, items, stamps, is_target):
        up._refresh_static()
        measured = {}
        for on in (False, True):
            up.twins_on = on
            drawn = validation_users(up, users, items, is_target)
            if len(drawn) < 2 * blend.MIN_VALIDATION_USERS:
                up.twins_on = False
                return learn(up, users, items, stamps, is_target)
            measured[on] = held_out_ndcg(up, drawn, len(up._blend_features()))
        up.twins_on = measured[True] > measured[False]
        print(f"history twins {'on' if up.twins_on else 'off'}: held-out NDCG@10 "
              f"{measured[False]:.4f} without, {measured[True]:.4f} with", file=sys.stderr)
        for name in up._blend_features():
            up.blend_.setdefault(name, 0.0)
        return learn(up, users, items, stamps, is_target)

    blend.learn = choosing_learn


if __name__ == "__main__":
    dataset = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "switched"
    twinned = tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else ALL_TWINS
    cls = study_class(twinned)
    if mode == "always":
        cls.twins_on = True
    else:
        switch_in_fit()
    evaluate = importlib.import_module("recsys.evaluation.evaluate")
    recipe_class = evaluate._recipe_class
    evaluate._recipe_class = (lambda module, name: cls if name == "user-personalization"
                              else recipe_class(module, name))
    tag = "twins-" + mode + ("" if twinned == ALL_TWINS else "-" + "-".join(twinned))
    evaluate_up(dataset, tag)
