"""Ground truth decides: the follow-impact analysis finds the planted follow effect and
finds none when the generator plants none; the report renders numbers and images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli.analyze import graph_labels
from recsys.analysis import FollowImpactConfig, follow_impact, read_follows, write_report
from recsys.analysis.stats import holm
from recsys.analysis.trend_tuning import tune_trending
from recsys.datasets import load_directory
from recsys.demo_data import generate_demo_data

# Small enough for seconds, large enough (~125 held-out users) for the planted effect.
USERS, POLLS, DAYS = 500, 1000, 7


def _run(tmp: Path, effect: bool):
    d = tmp / ("on" if effect else "off")
    generate_demo_data(d, users=USERS, polls=POLLS, days=DAYS, seed=3, follow_effect=effect)
    ds = load_directory(d)
    follows = read_follows(d / "follows.csv")
    labels = graph_labels(d / "follows.csv")
    result = follow_impact(ds.interactions, ds.items, ds.users, follows, labels=labels,
                           impressions=ds.impressions,
                           config=FollowImpactConfig(seeds=(0,),
                                                     recipe_params={"use_text": False}))
    return ds, result


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("fi"), True)


def test_planted_follow_effect_is_found(planted):
    _, result = planted
    assert result.verdict["follow_effect_in_engagement"] is True
    assert result.engagement.difference > 0
    assert result.natural_rate > result.engagement.mean_baseline


def test_no_effect_found_when_none_is_planted(tmp_path):
    _, result = _run(tmp_path, False)
    assert result.verdict["follow_effect_in_engagement"] is False


def test_in_network_source_raises_followee_share(planted):
    _, result = planted
    c = next(c for c in result.comparisons
             if c.treatment == "in-network" and c.metric == "followee_share")
    assert c.significant and c.difference > 0.1
    assert c.z_test_p is not None and c.holm_p >= c.paired_t_p


def test_holm_is_step_down_and_monotone():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_report_tables_hold_numbers_and_images_open(planted, tmp_path):
    from PIL import Image

    ds, result = planted
    trend = tune_trending(ds.interactions, warmup=86_400)
    page = write_report(tmp_path, follow=result, trend=trend)
    text = page.read_text()
    cells = [c.split("</td>")[0] for c in text.split("<td>")[1:]]
    numeric = [c for c in cells if c.replace(".", "").replace("-", "").replace("e", "")
               .isdigit()]
    assert len(numeric) > 20
    for png in ("follow_impact.png", "trend_tuning.png"):
        assert f'src="{png}"' in text
        with Image.open(tmp_path / png) as im:
            assert im.size[0] > 100
    numbers = json.loads((tmp_path / "report.json").read_text())
    assert numbers["trend_tuning"]["recommended"] == trend.recommended
    assert 0 <= numbers["follow_impact"]["natural_rate"] <= 1
