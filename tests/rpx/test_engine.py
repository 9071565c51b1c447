"""rpx.run: streaming through slots gives rpx.attack's results image by image."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import rpx
from tests.rpx import planted

PATCH = ((2, 5), (3, 6))
PREDICT = planted.one_pixel_model(PATCH)
THREE = planted.three_class_model(PATCH)
CONFIG = rpx.AttackConfig(population=24, generations=40)
FIELDS = [
    "success",
    "generations",
    "queries",
    "positions",
    "colors",
    "probs",
    "fitness_curve",
    "adversarial",
]


def assert_same(a, b):
    for field in FIELDS:
        np.testing.assert_array_equal(
            np.asarray(getattr(a, field)), np.asarray(getattr(b, field)), err_msg=field
        )


def mixed_batch(n=9):
    images = planted.grey_images(n, seed=3)
    region = np.ones((n, 8, 8), bool)
    region[2] = False  # empty: finishes without a single query
    region[5] = ~planted.patch_mask(8, 8, PATCH)  # cannot succeed: runs the whole budget
    return images, np.zeros(n, np.int32), region


def attack_mixed():
    """rpx.attack on mixed_batch() with CONFIG and key 0: what every rpx.run must equal."""
    images, labels, region = mixed_batch()
    return rpx.attack(PREDICT, images, labels, region=region, config=CONFIG, key=jax.random.key(0))


def run_mixed(**kwargs):
    """rpx.run on mixed_batch() with CONFIG, key 0 and no progress bar, plus `kwargs`."""
    images, labels, region = mixed_batch()
    return rpx.run(
        PREDICT,
        images,
        labels,
        region=region,
        config=CONFIG,
        key=jax.random.key(0),
        progress=False,
        **kwargs,
    )


@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_results_equal_attack_whatever_the_batch_size(batch_size):
    expected, got = attack_mixed(), run_mixed(batch_size=batch_size)
    assert_same(expected, got)
    assert got.queries[2] == 0 and not got.success[5] and got.generations[5] == 41


def test_named_rows_equal_the_same_rows_of_a_full_run():
    full = attack_mixed()
    rows = np.array([7, 2, 5])
    seen = []
    part = run_mixed(rows=rows, batch_size=2, callback=lambda r, partial: seen.extend(r.tolist()))
    assert sorted(seen) == [2, 5, 7]
    assert_same(jax.tree.map(lambda a: np.asarray(a)[rows], full), part)


def test_many_targets_per_image_expand_into_rows():
    images = planted.grey_images(3, seed=4)
    labels = np.zeros(3, np.int32)
    targets = np.array([[1, 2], [2, 1], [1, 2]], np.int32)
    got = rpx.run(
        THREE,
        images,
        labels,
        target=targets,
        config=CONFIG,
        key=jax.random.key(1),
        batch_size=4,
        progress=False,
    )
    expected = rpx.attack(
        THREE,
        np.repeat(images, 2, axis=0),
        np.zeros(6, np.int32),
        target=targets.reshape(-1),
        config=CONFIG,
        key=jax.random.key(1),
    )
    assert_same(expected, got)
    np.testing.assert_array_equal(np.argmax(got.probs, -1), targets.reshape(-1))


@pytest.mark.parametrize("refill_every", [1, 100])
def test_a_stopped_image_frees_its_slot_at_once(refill_every):
    # Two slots. Image 0's region is empty (it stops before any population); images 1,
    # 3 and 4 are labelled 1 while the classifier says 0, so they succeed in their
    # initial population; image 2 can never succeed and runs its whole budget. Images 3
    # and 4 must start in a freed slot while image 2 still runs, whatever the segment
    # length.
    images = planted.grey_images(5, seed=5)
    labels = np.array([0, 1, 0, 1, 1], np.int32)
    region = np.ones((5, 8, 8), bool)
    region[0] = False
    region[2] = ~planted.patch_mask(8, 8, PATCH)
    order, saved = [], {}

    def callback(rows, partial):
        order.extend(rows.tolist())
        saved.update({int(r): int(q) for r, q in zip(rows, partial.queries, strict=True)})

    result = rpx.run(
        PREDICT,
        images,
        labels,
        region=region,
        config=CONFIG,
        key=jax.random.key(2),
        batch_size=2,
        refill_every=refill_every,
        callback=callback,
        progress=False,
    )
    assert order[0] == 0 and saved[0] == 0
    assert saved[1] == saved[3] == saved[4] == 24  # one population each
    assert order == [0, 1, 3, 4, 2] and saved[2] == 41 * 24
    assert saved == {i: int(q) for i, q in enumerate(result.queries)}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(refill_every=0), "refill_every"),
        (dict(batch_size=-2), "batch_size"),
        (dict(batch_size=True), "batch_size"),  # a bool is no slot count (was taken as 1)
        (dict(refill_every=True), "refill_every"),
        (dict(rows=np.array([0, 4])), "rows must be row indices"),
        (dict(rows=np.array([1, 1])), "rows must not repeat"),
        (dict(target=np.ones((3, 2), np.int32)), "target must be"),
        (dict(target=np.array([[1, 0], [1, 2]], np.int32)), "target must differ"),
    ],
)
def test_bad_streaming_arguments(kwargs, message):
    images, labels = planted.grey_images(2), np.zeros(2, np.int32)
    with pytest.raises(ValueError, match=message):
        rpx.run(
            THREE, images, labels, config=CONFIG, key=jax.random.key(0), progress=False, **kwargs
        )


FOUR_DEVICES = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from tests.rpx.test_engine import run_mixed
    result = run_mixed(batch_size=8)
    print(json.dumps(dict(devices=jax.device_count(),
                          **{f: np.asarray(getattr(result, f)).tolist() for f in sys.argv[1:]})))
    """
)


def _on_fake_devices(count: int, script: str, *args) -> dict:
    """Run `script` (python -c, from the repository root) on `count` fake CPU devices;
    returns the JSON dict of its last output line."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={count}"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_four_fake_cpu_devices_give_the_same_results():
    fields = ["success", "generations", "positions", "probs"]
    got = _on_fake_devices(4, FOUR_DEVICES, *fields)
    assert got["devices"] == 4
    expected = attack_mixed()
    for field in fields:
        np.testing.assert_array_equal(
            np.asarray(getattr(expected, field)), got[field], err_msg=field
        )


TWO_HOSTS = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=2,
                               process_id=int(sys.argv[1]))
    import numpy as np
    from tests.rpx.test_engine import run_mixed
    result = run_mixed(batch_size=2)
    print(json.dumps(dict(hosts=jax.process_count(),
                          generations=np.asarray(result.generations).tolist(),
                          positions=np.asarray(result.positions).tolist())))
    """
)


@pytest.mark.slow
def test_two_processes_share_the_rows_and_both_return_all_of_them():
    with socket.socket() as s:  # a free local port for the coordinator
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    hosts = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_HOSTS, str(i), address],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [host.communicate(timeout=600) for host in hosts]
    expected = attack_mixed()
    for host, (out, err) in zip(hosts, outputs, strict=True):
        assert host.returncode == 0, err[-3000:]
        got = json.loads(out.strip().splitlines()[-1])
        assert got["hosts"] == 2
        np.testing.assert_array_equal(got["generations"], expected.generations)
        np.testing.assert_array_equal(got["positions"], expected.positions)


def test_weights_as_an_argument_equal_attack_and_reuse_the_compiled_pieces():
    traces = []

    def predict(params, x):
        traces.append(x.shape)
        z = params["gain"] * (planted.closeness(x, PATCH, planted.RED) - params["at"])
        return jax.nn.softmax(jax.numpy.stack([jax.numpy.zeros_like(z), z], axis=-1), axis=-1)

    images, labels = planted.grey_images(5), np.zeros(5, np.int32)
    runs = []
    for at in (0.75, 0.6):
        params = dict(gain=np.float32(20.0), at=np.float32(at))
        runs.append(
            rpx.run(
                predict,
                images,
                labels,
                params=params,
                config=CONFIG,
                key=jax.random.key(2),
                batch_size=2,
                progress=False,
            )  # fmt: skip
        )
        if at == 0.75:
            first = len(traces)
    assert len(traces) == first, "new weights traced predict again"
    expected = rpx.attack(
        predict, images, labels, params=params, config=CONFIG, key=jax.random.key(2)
    )
    assert_same(runs[1], expected)


PLACEHOLDER = textwrap.dedent(
    """
    import json
    import jax, numpy as np
    import rpx
    from tests.rpx import planted
    from tests.rpx.test_engine import PATCH, PREDICT
    rows = []

    def counted(x):  # PREDICT, counting the images it is run on
        jax.debug.callback(lambda x: rows.append(len(x)), x)
        return PREDICT(x)

    config = rpx.AttackConfig(population=24, generations=40, chunk_size=24, evaluation="full")
    region = ~planted.patch_mask(8, 8, PATCH)[None]  # cannot succeed: the whole budget
    result = rpx.run(counted, planted.grey_images(1), np.zeros(1, np.int32), region=region,
                     config=config, key=jax.random.key(0), progress=False)
    print(json.dumps(dict(devices=jax.device_count(), rows=sum(rows),
                          **{f: np.asarray(getattr(result, f)).tolist()
                             for f in ("success", "generations", "queries", "positions",
                                       "colors", "probs", "fitness_curve", "adversarial")})))
    """
)


@pytest.mark.slow
def test_placeholder_slots_of_the_device_rounding_search_nothing():
    # One image on two devices: the slot count is rounded up to 2, and the spare slot
    # holds a placeholder that must stay inactive (it used to start a full search of
    # image 0 with an all-True region, whose result was thrown away).
    got = _on_fake_devices(2, PLACEHOLDER)
    assert got["devices"] == 2 and got["queries"] == [41 * 24]
    # The real row's candidates, plus at most one image per slot for the clean-image
    # probe of check_inputs and the final probabilities: no population of a placeholder.
    assert got["queries"][0] <= got["rows"] <= got["queries"][0] + 3
    config = rpx.AttackConfig(population=24, generations=40, chunk_size=24, evaluation="full")
    region = ~planted.patch_mask(8, 8, PATCH)[None]
    expected = rpx.attack(
        PREDICT, planted.grey_images(1), np.zeros(1, np.int32), region=region,
        config=config, key=jax.random.key(0),
    )  # fmt: skip
    for field in FIELDS:
        np.testing.assert_array_equal(
            np.asarray(getattr(expected, field)), got[field], err_msg=field
        )
