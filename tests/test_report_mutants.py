"""What the mutation pass on the report and the dashboard found untested: an insight's
sentence naming its steps, devices or campaigns in the wrong roles, the earliest step on a
tie, the device gap's sign. Each case is a section of a few numbers, worked by hand, so a
sentence is compared whole and each number with the arithmetic done here."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest

from productlens.metrics.funnel import counted_steps
from productlens.report import insights as ins
from productlens.report.sections import FunnelSection, ProductsSection


def funnel(
    counts: tuple[int, ...], by_device: dict[str, tuple[int, ...]] | None = None
) -> FunnelSection:
    names = [f"e{i}" for i in range(len(counts))]
    devices = {d: counted_steps(names, c) for d, c in (by_device or {}).items()}
    return FunnelSection(timedelta(days=1), counted_steps(names, counts), devices, pa.table({}))


# --- the biggest drop-off ----------------------------------------------------------------------

# counts per step -> (from step, to step, users lost, rate), worked by hand.
DROPOFFS = [
    # 10 -> 9 loses 10%, 9 -> 3 loses 66.7%, 3 -> 2 loses 33.3%: the middle step.
    ((10, 9, 3, 2), ("e1", "e2", 6, 6 / 9)),
    # 8 -> 4 and 4 -> 2 both lose 50%: the earliest of them, though 2 -> 2 loses none.
    ((8, 4, 2, 2), ("e0", "e1", 4, 0.5)),
    # The last step loses the most.
    ((5, 5, 4, 1), ("e2", "e3", 3, 0.75)),
]


@pytest.mark.parametrize(("counts", "want"), DROPOFFS, ids=[str(c) for c, _ in DROPOFFS])
def test_the_biggest_drop_off_names_the_step_before_and_after_it(
    counts: tuple[int, ...], want: tuple[str, str, int, float]
) -> None:
    before, after, lost, rate = want
    got = ins.biggest_dropoff(funnel(counts))
    assert got is not None
    assert got.values == {
        "from_step": before,
        "to_step": after,
        "rate": pytest.approx(rate, abs=1e-12),
        "n_lost": lost,
    }
    assert got.text == (
        f"The biggest drop-off is from {before} to {after}: {rate:.1%} of the users who "
        f"reached {before} ({lost:,} users) went no further."
    )


# --- the device gap -----------------------------------------------------------------------------


def test_the_device_gap_names_the_best_device_first_and_is_positive() -> None:
    # Conversion first step to last: desktop 5/10, tablet 3/8, mobile 2/10.
    f = funnel((28, 10), {"mobile": (10, 2), "desktop": (10, 5), "tablet": (8, 3)})
    got = ins.device_gap(f)
    assert got is not None
    assert got.values == {
        "best_device": "desktop",
        "best_rate": 0.5,
        "worst_device": "mobile",
        "worst_rate": 0.2,
        "gap": pytest.approx(0.3),
    }
    assert got.text == (
        "desktop converts best (50.0%), mobile worst (20.0%): a gap of 30.0 percentage points."
    )


def test_a_device_no_user_entered_from_is_left_out_of_the_gap() -> None:
    f = funnel((4, 2), {"web": (4, 2), "tv": (0, 0)})
    assert ins.device_gap(f) is None  # one device left: no gap to state


# --- campaigns ----------------------------------------------------------------------------------


def campaigns(*rows: tuple[str, str, float, float, float]) -> ProductsSection:
    """Campaigns as the section holds them: id, name, spend, first-touch revenue, ROI."""
    return ProductsSection(
        None,
        None,
        pa.table(
            {
                "campaign_id": [r[0] for r in rows],
                "campaign_name": [r[1] for r in rows],
                "spend": [r[2] for r in rows],
                "first_touch_revenue": [r[3] for r in rows],
                "roi": [r[4] for r in rows],
            }
        ),
    )


def test_the_best_and_worst_campaigns_are_named_in_their_roles() -> None:
    p = campaigns(
        ("c1", "Spring", 100.0, 300.0, 0.5),
        ("c2", "Winter", 50.0, 40.0, -0.2),
        ("c3", "Autumn", 80.0, 120.0, 0.25),
    )
    got = ins.campaign_roi(p)
    assert got is not None
    assert got.values == {
        "best_campaign": "c1",
        "best_roi": 0.5,
        "worst_campaign": "c2",
        "worst_roi": -0.2,
    }
    assert got.text == (
        "Best campaign by ROI: Spring (+50% on 100.00 spent); worst: Winter (-20% on 50.00)."
    )


def test_campaigns_that_brought_no_revenue_say_nothing_of_roi() -> None:
    p = campaigns(("c1", "Spring", 100.0, 0.0, -1.0), ("c2", "Winter", 50.0, 0.0, -1.0))
    assert ins.campaign_roi(p) is None
