import jax
import jax.numpy as jnp
import numpy as np

from rpx import search


def test_latin_hypercube_puts_one_value_in_each_stratum():
    pop = np.asarray(search.initial_population(jax.random.key(0), 50, 7, "lhs"))
    assert pop.shape == (50, 7)
    assert (pop >= 0).all() and (pop < 1).all()
    for d in range(7):
        np.testing.assert_array_equal(np.sort(np.floor(pop[:, d] * 50)), np.arange(50))


def test_uniform_init_is_in_bounds_and_not_stratified():
    pop = np.asarray(search.initial_population(jax.random.key(0), 50, 7, "uniform"))
    assert (pop >= 0).all() and (pop < 1).all()
    assert any(len(set(np.floor(pop[:, d] * 50))) < 50 for d in range(7))


def test_keep_in_bounds_redraws_only_out_of_range_genes():
    genes = jnp.array([[-0.2, 0.3, 1.0, 0.999, 1.7, 0.0]])
    out = np.asarray(search.keep_in_bounds(jax.random.key(1), genes))
    assert (out >= 0).all() and (out < 1).all()
    np.testing.assert_array_equal(out[0, [1, 3, 5]], np.float32([0.3, 0.999, 0.0]))
    assert out[0, 0] != -0.2 and out[0, 2] != 1.0


def test_strategy_settings_map_to_evosax_params():
    _, best = search.make_strategy(5, 10, "best1bin", (0.5, 1.0), 1.0)
    _, rand = search.make_strategy(5, 10, "rand1bin", (0.7, 0.7), 0.3)
    assert best.elitism and not rand.elitism
    assert (best.differential_weight_min, best.differential_weight_max) == (0.5, 1.0)
    assert rand.differential_weight == 0.7 and rand.crossover_rate == 0.3
