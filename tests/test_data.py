"""Tests of ``gradflow.data``: shapes, label conventions, balance, options, files, errors."""

from __future__ import annotations

import random
import socket
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradflow.data as gd
from gradflow.data import _options, _real
from gradflow.scenario import ConfigError, load_config

# Small, fast settings per loader; binary and multiclass variants.
SMALL = {
    "digits": dict(n_train=40, n_test=20),
    "mnist1d": dict(n_train=40, n_test=20, pool_size=400),
    "gaussian-mixture": dict(n_train=40, n_test=20, dim=6),
    "teacher": dict(n_train=40, n_test=20, dim=6, depth=2, width=8),
    "compositional": dict(n_train=40, n_test=20, levels=3),
}
REAL = ("digits", "mnist1d")
SHAPES = {
    "digits": (64,),
    "mnist1d": (40,),
    "gaussian-mixture": (6,),
    "teacher": (6,),
    "compositional": (8,),
}


def _load(name, **extra):
    return gd.load(name, **{**SMALL[name], **extra})


def _counts(ds, split="train"):
    return np.bincount(ds.labels(split), minlength=ds.num_outputs if ds.num_outputs > 1 else 2)


def _check_targets(y, k):
    assert y.dtype == np.float64
    if k == 2:
        assert y.shape[1] == 1
        assert set(np.unique(y)) == {-1.0, 1.0}
    else:
        assert y.shape[1] == k
        assert np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("classes", [(1, 0), None])
def test_shapes_labels_balance(name, classes):
    if classes is None and name != "compositional":
        classes = (0, 1, 2) if name in ("teacher", "gaussian-mixture") else (2, 5, 7, 9)
    ds = _load(name, classes=classes)
    k = len(ds.classes)
    assert ds.name == name
    assert ds.x_train.shape == (40, *SHAPES[name]) and ds.x_train.dtype == np.float64
    assert ds.x_test.shape == (20, *SHAPES[name]) and ds.x_test.dtype == np.float64
    if classes is not None:
        assert ds.classes == tuple(classes)
    _check_targets(ds.y_train, k)
    _check_targets(ds.y_test, k)
    for split, n in (("train", 40), ("test", 20)):
        counts = _counts(ds, split)
        assert counts.sum() == n and counts.max() - counts.min() <= 1
        if n % k == 0:
            assert np.all(counts == n // k)
    assert ds.options["classes"] == ds.classes and ds.options["n_train"] == 40
    assert ds.noisy_indices.shape == (0,) and ds.y_train_clean is None


def test_binary_order_first_class_is_minus_one(tmp_path):
    x = np.arange(12, dtype=float).reshape(6, 2)
    y = np.array([3, 3, 3, 7, 7, 7])
    path = _save(x, y, tmp_path / "o.npz")
    for order, sign in (((3, 7), -1.0), ((7, 3), 1.0)):
        ds = gd.load("npz", path=path, classes=order, n_train=4, n_test=2)
        for xs, ys in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
            is_three = xs[:, 0] < 6
            assert np.all(ys[is_three, 0] == sign) and np.all(ys[~is_three, 0] == -sign)


def test_image_and_channel_options():
    ds = _load("digits", image=True, classes=(0, 1))
    assert ds.x_train.shape == (40, 1, 8, 8)
    flat = _load("digits", classes=(0, 1))
    np.testing.assert_array_equal(ds.x_train.reshape(40, 64), flat.x_train)
    assert flat.x_train.max() <= 1.0 and flat.x_train.min() >= 0.0
    ds = _load("mnist1d", channel_first=True)
    assert ds.x_train.shape == (40, 1, 40) and ds.x_test.shape == (20, 1, 40)


def test_real_defaults_split_balanced_pool():
    ds = gd.load("digits", classes=(0, 1))  # 178 zeros and 182 ones
    assert ds.n_train + ds.n_test == 2 * 178 and ds.n_test == 2 * int(0.2 * 178)
    ds = gd.load("digits", classes=(0, 1), n_train=100)
    assert ds.n_test == 2 * (178 - 50)
    ds = gd.load("digits", n_train=100, n_test=0)
    assert not ds.has_test and ds.num_outputs == 10


@pytest.mark.parametrize("name", sorted(SMALL))
def test_seed_determinism(name):
    a, b, c = _load(name, seed=3), _load(name, seed=3), _load(name, seed=4)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.x_train, c.x_train)


def _rows(x):
    return {row.tobytes() for row in x.reshape(len(x), -1)}


@pytest.mark.parametrize("name", REAL)
def test_real_train_test_disjoint(name):
    ds = _load(name, n_train=200, n_test=100)
    assert len(_rows(ds.x_train)) == 200 and len(_rows(ds.x_test)) == 100
    assert not _rows(ds.x_train) & _rows(ds.x_test)


def test_mnist1d_leaves_global_rng_alone():
    _real._mnist1d_pool.cache_clear()
    np.random.seed(123)
    random.seed(123)
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    _load("mnist1d", pool_size=200)
    np.testing.assert_array_equal(np.random.get_state()[1], np_before)
    assert random.getstate() == py_before


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("noise", [0.25, 1.0])
def test_label_noise_exact_count(name, noise):
    classes = (0, 1, 2)
    ds = _load(name, label_noise=noise, classes=None if name == "compositional" else classes)
    clean = _load(name, classes=None if name == "compositional" else classes)
    k = len(ds.classes)
    assert len(ds.noisy_indices) == round(noise * 40)
    assert np.all(np.diff(ds.noisy_indices) > 0)
    np.testing.assert_array_equal(ds.y_train_clean, clean.y_train)
    np.testing.assert_array_equal(ds.x_train, clean.x_train)
    np.testing.assert_array_equal(ds.y_test, clean.y_test)
    keep = np.setdiff1d(np.arange(40), ds.noisy_indices)
    np.testing.assert_array_equal(ds.y_train[keep], clean.y_train[keep])
    _check_targets(ds.y_train, k)


def test_label_noise_changed_fraction():
    ds = gd.load("gaussian-mixture", n_train=4000, n_test=0, label_noise=0.3, classes=4)
    changed = np.mean(ds.labels() != np.argmax(ds.y_train_clean, axis=1))
    assert abs(changed - 0.3 * 3 / 4) < 0.03
    assert ds.options["label_noise"] == 0.3


@pytest.mark.parametrize("name", sorted(SMALL))
def test_unit_norm(name):
    ds = _load(name, unit_norm=True)
    for x in (ds.x_train, ds.x_test):
        np.testing.assert_allclose(np.linalg.norm(x.reshape(len(x), -1), axis=1), 1.0)
    assert ds.input_bound == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_standardize_uses_train_statistics(name):
    ds, raw = _load(name, standardize=True), _load(name)
    a = raw.x_train.reshape(40, -1)
    mean, std = a.mean(axis=0), a.std(axis=0)
    live = std > 0
    z = ds.x_train.reshape(40, -1)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0)[live], 1.0)
    np.testing.assert_allclose(z[:, ~live], 0.0)
    expect = (raw.x_test.reshape(20, -1) - mean) / np.where(live, std, 1.0)
    np.testing.assert_allclose(ds.x_test.reshape(20, -1), expect)


def _save(x, y, path, **more):
    np.savez(path, x_train=x, y_train=y, **more)
    return path


def _one_hot(labels, c):
    return np.eye(c)[labels]


@pytest.mark.parametrize(
    ("shape", "layout", "expect"),
    [
        ((30, 5), "auto", (5,)),
        ((30, 6, 7), "auto", (1, 6, 7)),
        ((30, 1, 6, 7), "auto", (1, 6, 7)),
        ((30, 3, 6, 7), "auto", (3, 6, 7)),
        ((30, 6, 7, 1), "auto", (1, 6, 7)),
        ((30, 6, 7, 3), "auto", (3, 6, 7)),
        ((30, 6, 7, 3), "channels_first", (6, 7, 3)),
        ((30, 6, 7, 2), "channels_last", (2, 6, 7)),
        ((30, 9, 2), "channels_last", (2, 9)),
        ((30, 2, 9), "channels_first", (2, 9)),
    ],
)
@pytest.mark.parametrize("one_hot", [False, True])
def test_npz_layouts_and_labels(tmp_path, shape, layout, expect, one_hot):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    labels = np.arange(30) % 3
    y = _one_hot(labels, 3) if one_hot else labels
    path = _save(x, y, tmp_path / "d.npz")
    ds = gd.load("npz", path=path, layout=layout, n_train=12, n_test=6)
    assert ds.x_train.shape == (12, *expect) and ds.x_train.dtype == np.float64
    assert ds.y_train.shape == (12, 3) and ds.y_test.shape == (6, 3)
    assert np.all(_counts(ds) == 4) and np.all(_counts(ds, "test") == 2)
    # each loaded sample is a transposed original with the right label
    if len(shape) == 4 and expect[0] == shape[-1] and expect != shape[1:]:
        orig = x.transpose(0, 3, 1, 2)
    elif len(shape) == 3 and layout == "channels_last":
        orig = x.transpose(0, 2, 1)
    else:
        orig = x.reshape(30, *expect)
    for xs, lab in ((ds.x_train, ds.labels()), (ds.x_test, ds.labels("test"))):
        for row, c in zip(xs, lab, strict=True):
            match = np.flatnonzero([np.array_equal(row, o) for o in orig.astype(np.float64)])
            assert len(match) == 1 and labels[match[0]] == c


def _cifar_like(tmp_path, n=30, vectors=False):
    """Channels-last CIFAR-shaped images whose channels have different means and scales."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 32, 32, 3)) * [1.0, 3.0, 0.5] + [10.0, -2.0, 0.0]
    xt = rng.standard_normal((12, 32, 32, 3)) * [1.0, 3.0, 0.5] + [10.0, -2.0, 0.0]
    if vectors:
        x, xt = x.reshape(n, -1), xt.reshape(12, -1)
    labels = np.arange(n) % 2
    path = tmp_path / "cifar_like.npz"
    return _save(x.astype(np.float32), labels, path, x_test=xt, y_test=np.arange(12) % 2)


def test_npz_channel_standardize_then_unit_norm(tmp_path):
    """The paper's preprocessing: per-channel mean 0 and std 1 with the train statistics (the
    test split standardized by them too), then unit norm per sample."""
    path = _cifar_like(tmp_path)
    raw = gd.load("npz", path=path, n_train=20, n_test=10)
    std = gd.load("npz", path=path, n_train=20, n_test=10, channel_standardize=True)
    both = gd.load(
        "npz", path=path, n_train=20, n_test=10, channel_standardize=True, unit_norm=True
    )
    assert std.x_train.shape == (20, 3, 32, 32) and std.options["channel_standardize"] is True
    np.testing.assert_allclose(std.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(std.x_train.std(axis=(0, 2, 3)), 1.0, rtol=1e-12)
    mean = raw.x_train.mean(axis=(0, 2, 3))[None, :, None, None]
    scale = raw.x_train.std(axis=(0, 2, 3))[None, :, None, None]
    assert not np.allclose(scale, 1.0)  # the raw channels really differ
    np.testing.assert_allclose(std.x_test, (raw.x_test - mean) / scale, rtol=1e-12, atol=1e-12)
    for ds_std, ds_both in ((std.x_train, both.x_train), (std.x_test, both.x_test)):
        norms = np.linalg.norm(ds_std.reshape(len(ds_std), -1), axis=1)
        np.testing.assert_allclose(ds_both, ds_std / norms[:, None, None, None], rtol=1e-12)
        np.testing.assert_allclose(
            np.linalg.norm(ds_both.reshape(len(ds_both), -1), axis=1), 1.0, rtol=1e-12
        )


@pytest.mark.parametrize(
    ("opts", "vectors", "message"),
    [
        ({"channel_standardize": "yes"}, False, "option channel_standardize='yes' is not allowed"),
        (
            {"channel_standardize": True, "standardize": True},
            False,
            "option channel_standardize=True is not allowed; use it or standardize=True",
        ),
        (
            {"channel_standardize": True},
            True,
            "option channel_standardize=True is not allowed; it needs channel-first inputs",
        ),
    ],
)
def test_npz_channel_standardize_bad_values(tmp_path, opts, vectors, message):
    path = _cifar_like(tmp_path, vectors=vectors)
    with pytest.raises(ValueError) as err:
        gd.load("npz", path=path, **opts)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_npz_with_test_split_and_binary(tmp_path):
    rng = np.random.default_rng(1)
    x, xt = rng.standard_normal((20, 4, 4, 1)), rng.standard_normal((10, 4, 4, 1))
    y, yt = np.repeat([-1, 1], 10)[:, None], np.repeat([-1, 1], 5)
    path = _save(x, y, tmp_path / "b.npz", x_test=xt, y_test=yt)
    ds = gd.load("npz", path=path)
    assert ds.classes == (-1, 1) and ds.x_train.shape == (20, 1, 4, 4)
    assert ds.x_test.shape == (10, 1, 4, 4)
    assert np.sum(ds.y_train == 1) == 10 and np.sum(ds.y_test == -1) == 5
    assert _rows(ds.x_test) == _rows(xt.transpose(0, 3, 1, 2))
    ds = gd.load("npz", path=path, n_train=8, n_test=0, seed=2)
    assert ds.n_train == 8 and not ds.has_test


@pytest.mark.parametrize("name", sorted(SMALL) + ["npz"])
def test_no_network(monkeypatch, tmp_path, name):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    _real._mnist1d_pool.cache_clear()
    if name == "npz":
        ds = gd.load("npz", path=_save(np.ones((4, 2)), [0, 1, 0, 1], tmp_path / "n.npz"))
    else:
        ds = _load(name)
    assert ds.n_train > 0


def test_names_and_options():
    assert gd.names() == tuple(
        sorted(["digits", "mnist1d", "npz", "gaussian-mixture", "teacher", "compositional"])
    )
    for name in gd.names():
        assert set(_options.COMMON) <= set(gd.options(name))


@given(total=st.integers(0, 500), k=st.integers(1, 12))
def test_per_class_is_balanced(total, k):
    counts = _options.per_class(total, k)
    assert counts.sum() == total and counts.max() - counts.min() <= (1 if total % k else 0)


# ---------------------------------------------------------------- errors: one clear line


def _raises(match, name, **opts):
    with pytest.raises(ValueError, match=match) as info:
        gd.load(name, **opts)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_error_unknown_dataset():
    _raises(r"dataset name 'digitz' is unknown; allowed: compositional, digits", "digitz")


def test_error_unknown_option():
    msg = _raises(
        r"dataset 'digits': option 'n_trian' is unknown; allowed: classes", "digits", n_trian=5
    )
    assert "n_train" in msg and "label_noise" in msg
    _raises(r"dataset 'teacher': option 'levels' is unknown", "teacher", levels=2)


def test_error_npz_files(tmp_path):
    missing = tmp_path / "nope.npz"
    _raises(
        r"dataset 'npz': option path=.*nope\.npz.* no such file; use the path of an existing",
        "npz",
        path=missing,
    )
    _raises(r"dataset 'npz': option path=None", "npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    _raises(r"option path=.*junk\.npz.* not a readable \.npz", "npz", path=tmp_path / "junk.npz")
    np.savez(tmp_path / "a.npz", x_train=np.ones((4, 2)))
    _raises(
        r"option path=.* lacks array 'y_train' \(arrays: x_train\)", "npz", path=tmp_path / "a.npz"
    )
    np.savez(tmp_path / "b.npz", x_train=np.ones((4, 2)), y_train=[0, 1, 0])
    _raises(r"y_train has 3 samples but x_train has 4", "npz", path=tmp_path / "b.npz")
    _save(np.ones((4, 2)), [0, 1, 0, 1], tmp_path / "c.npz", x_test=np.ones((2, 2)), y_test=[0])
    _raises(r"y_test has 1 samples but x_test has 2", "npz", path=tmp_path / "c.npz")
    _save(np.ones((4, 2)), [0, 1, 0, 1], tmp_path / "s.npz", x_test=np.ones((2, 3)), y_test=[0, 1])
    _raises(
        r"x_test has sample shape \(3,\) but x_train has \(2,\)", "npz", path=tmp_path / "s.npz"
    )
    _save(np.ones((4, 2)), [0, 1, 0, 1], tmp_path / "d.npz", x_test=np.ones((2, 2)))
    _raises(r"give both x_test and y_test", "npz", path=tmp_path / "d.npz")
    _save(np.ones((4, 2)), [[1, 1], [0, 1], [1, 0], [0, 1]], tmp_path / "e.npz")
    _raises(
        r"y_train has shape \(N, C\) but its rows are not one-hot", "npz", path=tmp_path / "e.npz"
    )
    _save(np.ones((4, 2)), [0.5, 1, 0, 1], tmp_path / "f.npz")
    _raises(
        r"y_train must hold integer class labels; for real-valued targets use targets=",
        "npz",
        path=tmp_path / "f.npz",
        targets="classes",
    )
    _save(np.ones((4, 2)), [0, 1, 0, 1], tmp_path / "g.npz")
    _raises(
        r"option layout='nhwc' is not allowed; use one of auto, channels_first",
        "npz",
        path=tmp_path / "g.npz",
        layout="nhwc",
    )


def test_error_class_absent(tmp_path):
    _raises(
        r"dataset 'digits': option classes=\(3, 11\) .* class 11 is absent",
        "digits",
        classes=(3, 11),
    )
    path = _save(np.ones((4, 2)), [0, 1, 0, 1], tmp_path / "h.npz")
    _raises(
        r"dataset 'npz': option classes=\(0, 2\) .* class 2 is absent; available labels: "
        r"\[0, 1\]",
        "npz",
        path=path,
        classes=(0, 2),
    )
    _raises(r"option classes=\(0, 2\) .* class 2 is absent", "compositional", classes=(0, 2))
    _raises(r"option classes=\(1, 1\) .* at least two distinct", "digits", classes=(1, 1))
    _raises(
        r"option classes=\['a', 'b'\] is not allowed", "mnist1d", classes=["a", "b"], pool_size=200
    )


def test_error_too_many_samples():
    _raises(
        r"dataset 'digits': option n_train=400 is not allowed; class 0 has \d+ samples "
        r"available but 200 are needed",
        "digits",
        classes=(0, 1),
        n_train=400,
        n_test=0,
    )
    _raises(
        r"dataset 'digits': option n_train=300 .* class 0 has 128 samples available "
        r"besides n_test=100 but 150",
        "digits",
        classes=(0, 1),
        n_train=300,
        n_test=100,
    )
    _raises(
        r"dataset 'mnist1d': option n_test=5000 is not allowed",
        "mnist1d",
        pool_size=200,
        n_test=5000,
    )
    _raises(r"option n_train=0 is not allowed; use an integer >= 1", "teacher", n_train=0)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("value", [-0.1, 1.5, "half"])
def test_error_label_noise(name, value):
    _raises(
        rf"dataset '{name}': option label_noise={value!r} is not allowed; use a fraction "
        r"in \[0, 1\]",
        name,
        label_noise=value,
    )


def test_error_other_options():
    _raises(r"option unit_norm=1 is not allowed; use True or False", "digits", unit_norm=1)
    _raises(r"option seed=-1 is not allowed", "compositional", seed=-1)
    _raises(r"option image='yes' is not allowed", "digits", image="yes")
    _raises(r"option depth=0 is not allowed", "teacher", depth=0)


def test_error_teacher_class_impossible():
    # seed 0, width 1: the output weight is negative, so g(x) <= 0 and class 1 never occurs
    _raises(
        r"dataset 'teacher': option classes=\(0, 1\) .* class 1 appeared 0 times in "
        r"1000000 draws",
        "teacher",
        dim=4,
        width=1,
        depth=2,
        n_train=8,
        n_test=0,
    )


@pytest.mark.parametrize("name", sorted(set(SMALL) - {"compositional"}))  # it has 2 labels
def test_centre_targets_subtracts_one_over_c(name):
    """``centre_targets``: one-hot − 1/C on every split; labels, inputs, noise unchanged."""
    opts = dict(SMALL[name], classes=3, label_noise=0.25, seed=4)
    plain = gd.load(name, **opts)
    centred = gd.load(name, **opts, centre_targets=True)
    np.testing.assert_array_equal(centred.x_train, plain.x_train)
    np.testing.assert_array_equal(centred.y_train, plain.y_train - 1.0 / 3)
    np.testing.assert_array_equal(centred.y_test, plain.y_test - 1.0 / 3)
    np.testing.assert_array_equal(centred.y_train_clean, plain.y_train_clean - 1.0 / 3)
    np.testing.assert_allclose(centred.y_train.sum(axis=1), 0.0, atol=1e-15)
    for split in ("train", "test"):
        np.testing.assert_array_equal(centred.labels(split), plain.labels(split))
    binary = dict(SMALL[name], classes=2, seed=4)
    np.testing.assert_array_equal(
        gd.load(name, **binary, centre_targets=True).y_train, gd.load(name, **binary).y_train
    )


def test_error_centre_targets():
    with pytest.raises(ValueError, match=r"option centre_targets='yes' is not allowed; use True"):
        gd.load("gaussian-mixture", centre_targets="yes")


# ---- npz: balancing reported, regression targets (also from a scenario file) -------------

_NPZ_SCENARIO = """
[scenario]
name = "user_data"
description = "a user's npz file"
question = "does it load?"

[data]
name = "npz"
path = "{path}"
{extra}
[model]
kind = "mlp"
widths = [4]

[time]
t1 = 1.0

[flow]
solver = "heun"
"""


def _unbalanced(path):
    """160 samples: 100 of class 0, 60 of class 1 (the issue's 160 -> 136 is 68 + 68 + 24)."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [100, 60])
    return _save(rng.standard_normal((160, 3)), labels, path)


def _scenario(tmp_path, data_file, extra=""):
    toml = tmp_path / "user.toml"
    toml.write_text(_NPZ_SCENARIO.format(path=data_file.name, extra=extra))
    return toml


def test_npz_balancing_from_a_scenario_reports_what_it_leaves_out(tmp_path):
    toml = _scenario(tmp_path, _unbalanced(tmp_path / "u.npz"))
    with pytest.warns(UserWarning) as caught:
        config = load_config(toml)
    ds = config.dataset
    # balanced 80/20 split of min(100, 60) = 60 per class: 48 + 12 of each class kept
    assert ds.n_train == 96 and ds.n_test == 24 and np.all(_counts(ds) == 48)
    expected = (
        "dataset 'npz': balance=True left out 40 training and test samples (class 0: 40, "
        "class 1: 0) to balance the classes; balance=False keeps every sample"
    )
    assert ds.notes == (expected,)
    assert [str(w.message) for w in caught] == [expected]
    assert expected in repr(ds)  # print(data) shows it too
    # balance = false keeps every sample, says nothing, and the split is random
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = load_config(toml, ["data.balance=false"])
    ds = config.dataset
    assert ds.n_train + ds.n_test == 160 and ds.n_test == 32 and ds.notes == ()
    assert _counts(ds).sum() + _counts(ds, "test").sum() == 160
    assert _counts(ds)[0] + _counts(ds, "test")[0] == 100
    # given counts that balance allows drop nothing by balancing: nothing to report
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(toml, ["data.n_train=40", "data.n_test=20"]).dataset.notes == ()


def test_npz_with_a_test_split_reports_each_split(tmp_path):
    rng = np.random.default_rng(1)
    path = _save(
        rng.standard_normal((30, 2)),
        np.repeat([0, 1], [20, 10]),
        tmp_path / "t.npz",
        x_test=rng.standard_normal((9, 2)),
        y_test=np.repeat([0, 1], [3, 6]),
    )
    with pytest.warns(UserWarning, match="left out"):
        ds = gd.load("npz", path=path)
    assert ds.notes == (
        "dataset 'npz': balance=True left out 10 training samples (class 0: 10, class 1: 0) "
        "and 3 test samples (class 0: 0, class 1: 3) to balance the classes; balance=False "
        "keeps every sample",
    )
    whole = gd.load("npz", path=path, balance=False)
    assert (whole.n_train, whole.n_test) == (30, 9) and whole.notes == ()


def test_npz_regression_targets_from_a_scenario(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 3))
    y = x @ np.array([0.5, -1.0, 2.0]) + 0.1  # real-valued targets (N,)
    path = _save(x, y, tmp_path / "r.npz")
    toml = _scenario(tmp_path, path)
    with pytest.warns(UserWarning) as caught:
        config = load_config(toml)
    ds = config.dataset
    detected = (
        "dataset 'npz': y_train holds real values, not class labels: read as regression "
        "targets (targets='auto'; targets='regression' says so explicitly)"
    )
    assert [str(w.message) for w in caught] == [detected] and ds.notes == (detected,)
    assert ds.is_regression and ds.options["targets"] == "regression" and ds.classes == ()
    assert ds.y_train.shape == (40, 1) and ds.y_test.shape == (10, 1)
    # the targets are the file's own values, with their own inputs
    for xs, ys in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        np.testing.assert_allclose(ys[:, 0], xs @ np.array([0.5, -1.0, 2.0]) + 0.1)
    assert "regression targets (40, 1)" in repr(ds)
    # stated in the file: no note; classes do not apply
    toml = _scenario(tmp_path, path, 'targets = "regression"\nn_train = 30\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_config(toml).dataset
    assert ds.notes == () and (ds.n_train, ds.n_test) == (30, 20) and ds.is_regression
    toml = _scenario(tmp_path, path, 'targets = "regression"\nclasses = [0, 1]\n')
    with pytest.raises(ConfigError, match=r"data\.classes=\[0, 1\] is not allowed; it applies"):
        load_config(toml)
    toml = _scenario(tmp_path, path, 'targets = "classes"\n')
    with pytest.raises(ConfigError, match="y_train must hold integer class labels"):
        load_config(toml)


def test_npz_regression_targets_with_several_columns(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((20, 4)), rng.standard_normal((20, 2))
    path = _save(x, y, tmp_path / "m.npz", x_test=x[:5], y_test=y[:5])
    ds = gd.load("npz", path=path, targets="regression", n_train=12, unit_norm=True)
    assert ds.y_train.shape == (12, 2) and ds.y_test.shape == (5, 2) and ds.notes == ()
    np.testing.assert_allclose(np.linalg.norm(ds.x_train, axis=1), 1.0)
    _raises(
        r"option targets='real' is not allowed; use one of auto, classes",
        "npz",
        path=path,
        targets="real",
    )


def test_an_empty_training_split_is_refused_in_one_line():
    """``Dataset`` with no training sample: one line naming x_train, its shape and the rule
    (before, ``gf.Problem`` failed later with JAX's raw ``IndexError``); an empty test split
    is still allowed."""
    x = np.zeros((0, 3))
    with pytest.raises(ValueError) as err:
        gd.Dataset("t", x, np.zeros((0, 1)), np.ones((2, 3)), np.ones((2, 1)))
    assert str(err.value) == (
        "dataset 't': x_train has 0 samples (shape (0, 3)); a training split needs at least "
        "one sample"
    )
    data = gd.Dataset("t", np.ones((2, 3)), np.ones((2, 1)), np.zeros((0, 3)), np.zeros((0, 1)))
    assert data.n_train == 2 and data.n_test == 0
