"""``channel_transform="log1p"``: channel spends enter the linear Stage-1 likelihood as log(1 + x / median)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import dice_prob as dp
from dice_prob.errors import ConfigError, DataValidationError
from dice_prob.inference.stage1 import fit_graph
from dice_prob.models.stage1 import log1p_channels, prepare_data

ROLES = ["channel", "channel", "intermediate", "target"]


def _spends(seed=0, shops=2, steps=40):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(shops, steps, 4))
    v[:, :, :2] = rng.lognormal(0.0, 1.0, size=(shops, steps, 2)) * (rng.random((shops, steps, 2)) > 0.3)
    return v


def test_log1p_channels_matches_numpy_and_leaves_other_nodes():
    v = _spends()
    out = log1p_channels(v, ROLES)
    for r in range(v.shape[0]):
        for i in (0, 1):
            x = v[r, :, i]
            np.testing.assert_allclose(out[r, :, i], np.log1p(x / np.median(x[x > 0])), rtol=1e-12)
    np.testing.assert_array_equal(out[:, :, 2:], v[:, :, 2:])
    # a channel that never spends in a shop stays at zero (scale 1), and the input is not modified
    v0 = v.copy()
    v0[1, :, 0] = 0.0
    before = v0.copy()
    assert np.all(log1p_channels(v0, ROLES)[1, :, 0] == 0.0)
    np.testing.assert_array_equal(v0, before)


def test_prepare_data_uses_the_z_scored_log_spends_as_lagged_sources():
    v = _spends()
    mask = np.zeros((4, 4), bool)
    mask[[0, 1, 2], 3] = True
    mask[[0, 1], 2] = True
    n_lags = 3
    d = prepare_data(v, ROLES, mask, n_lags=n_lags, channel_transform="log1p")
    ref = log1p_channels(v, ROLES)
    z = (ref - ref.mean(axis=1, keepdims=True)) / ref.std(axis=1, keepdims=True)
    srcs = list(d.structure.src_nodes)
    t_ = v.shape[1] - n_lags
    for k, i in enumerate(srcs):
        for lag in range(1, n_lags + 1):
            np.testing.assert_allclose(
                np.asarray(d.xlag)[:, :, k, lag - 1], z[:, n_lags - lag : n_lags - lag + t_, i], atol=1e-5
            )
    # the responses (intermediate, target) are the plain z-scores
    plain = prepare_data(v, ROLES, mask, n_lags=n_lags)
    np.testing.assert_allclose(np.asarray(d.y), np.asarray(plain.y), atol=1e-6)
    assert not np.allclose(np.asarray(d.xlag), np.asarray(plain.xlag), atol=1e-3)


def test_log1p_config_is_validated_and_round_trips():
    cfg = dp.Stage1Config(channel_transform="log1p")
    assert dp.Stage1Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="channel_transform"):
        dp.Stage1Config(channel_transform="sqrt")
    with pytest.raises(ConfigError, match="channel_transform"):
        dp.Stage1Config(mode="mmm", channel_transform="log1p")


def test_log1p_rejects_negative_spends_with_a_clear_error():
    v = _spends()
    v[0, 5, 1] = -1.0
    panel = dp.Panel(v, roles=ROLES)
    cfg = dp.Stage1Config(channel_transform="log1p", num_warmup=5, num_samples=5, progress_bar=False)
    with pytest.raises(DataValidationError, match="negative"):
        fit_graph(jax.random.key(0), panel, config=cfg)
    with pytest.raises(DataValidationError, match="negative"):
        log1p_channels(v, ROLES)
