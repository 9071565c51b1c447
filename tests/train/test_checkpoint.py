"""train.load_parts: the weights as an argument, one apply function per model; loading
is quiet."""

import logging
import os

import jax.numpy as jnp
import numpy as np

import train

ASSETS = os.path.join(os.path.dirname(os.path.abspath(train.__file__)), "assets")


def test_parts_give_the_closure_and_one_function_across_checkpoints():
    images = np.load(os.path.join(ASSETS, "cifar10_test_sample100.npz"))["image"][:4]
    x = jnp.asarray(images, jnp.float32)
    # Two checkpoints of the same model (compact): trained on an H100 and on the CPU.
    apply_a, variables_a, info_a = train.load_parts(os.path.join(ASSETS, "cifar10_compact"))
    apply_b, variables_b, info_b = train.load_parts(os.path.join(ASSETS, "cifar10_compact_cpu"))
    assert info_a["model"] == info_b["model"] == "compact"
    # The same function object, so an attack given params= compiles once for both.
    assert apply_a is apply_b
    predict, info = train.load_classifier(os.path.join(ASSETS, "cifar10_compact"))
    np.testing.assert_array_equal(predict(x), apply_a(variables_a, x))
    assert info == info_a
    assert not np.allclose(apply_a(variables_a, x), apply_b(variables_b, x))
    probs = apply_a(variables_a, x)
    assert probs.dtype == jnp.float32 and probs.shape == (4, 10)
    # flip_tta is another function, mirror-invariant.
    apply_t, variables_t, _ = train.load_parts(
        os.path.join(ASSETS, "cifar10_compact"), flip_tta=True
    )
    assert apply_t is not apply_a
    np.testing.assert_allclose(
        apply_t(variables_t, x), apply_t(variables_t, x[:, :, ::-1]), atol=1e-6
    )


def test_loading_a_shipped_classifier_logs_no_warning_and_leaves_absl_as_it_was(caplog):
    with caplog.at_level(logging.WARNING):
        train.load_classifier(os.path.join(ASSETS, "cifar10_compact_fast"))
        assert [r.getMessage() for r in caplog.records] == []  # orbax's read-only notices
        logging.getLogger("absl").warning("Given directory is read only=elsewhere")
    assert [r.getMessage() for r in caplog.records] == ["Given directory is read only=elsewhere"]
