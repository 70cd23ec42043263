"""benchmarks/drift_noise.py: the perturbation has the spread it measures, and the measure reads only where FP32
sees something."""

from __future__ import annotations

import numpy as np

from benchmarks.drift_noise import change_spread, perturb


def _outputs(rng, n=4, nc=3, anchors=400):
    o = np.empty((n, 4 + nc, anchors))
    o[:, 0:2] = rng.uniform(0, 320, (n, 2, anchors))
    o[:, 2:4] = rng.uniform(10, 100, (n, 2, anchors))
    o[:, 4:] = rng.uniform(0, 1, (n, nc, anchors)) ** 3
    return o


def test_perturbation_has_the_requested_spread():
    rng = np.random.default_rng(0)
    ref = _outputs(rng)
    logit_std, box_std = change_spread(ref, perturb(ref, np.random.default_rng(1), 0.13, 0.005))
    assert abs(logit_std - 0.13) < 0.01 and abs(box_std - 0.005) < 0.0004
    assert change_spread(ref, perturb(ref, np.random.default_rng(1), 0.0, 0.0)) == (0.0, 0.0)
    only_boxes = perturb(ref, np.random.default_rng(2), 0.0, 0.01)
    np.testing.assert_array_equal(only_boxes[:, 4:], ref[:, 4:])


def test_change_spread_ignores_anchors_fp32_does_not_see():
    rng = np.random.default_rng(3)
    ref = _outputs(rng)
    ref[:, 4:, :200] = 0.001  # background anchors
    out = ref.copy()
    out[:, :4, :200] += 50.0  # wild changes where nothing is seen: not counted
    assert change_spread(ref, out) == (0.0, 0.0)
    out[:, 0, 300] += 1.0
    assert change_spread(ref, out)[1] > 0
