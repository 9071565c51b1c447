import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpx.search import de as search


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


def test_donor_indices_are_distinct_exclude_member_and_base_and_are_uniform():
    draws = jax.vmap(
        lambda k: jnp.stack(
            [
                search.draw_excluding(k, 6, jnp.array([2])),
                search.draw_excluding(jax.random.fold_in(k, 1), 6, jnp.array([4, 1, 4])),
            ]
        )
    )(jax.random.split(jax.random.key(0), 30000))
    draws = np.asarray(draws)
    assert set(np.unique(draws[:, 0])) == {0, 1, 3, 4, 5}
    assert set(np.unique(draws[:, 1])) == {0, 2, 3, 5}  # duplicates in `excluded` are fine
    for column, allowed in ((0, 5), (1, 4)):
        counts = np.unique(draws[:, column], return_counts=True)[1]
        np.testing.assert_allclose(counts / 30000, 1 / allowed, atol=0.015)


def test_de_ask_mutates_from_the_best_with_two_distinct_other_donors():
    de, params = search.make_strategy(1, 8, "best1bin", (0.5, 0.5), 1.0)
    # Members at distinct powers of two: x_a + F (x_b - x_c) identifies a, b and c.
    population = jnp.array([2.0**i for i in range(8)])[:, None]
    fitness = jnp.arange(8.0)[::-1]  # member 7 is the best
    state = de.init(jax.random.key(0), population, fitness, params)
    for seed in range(20):
        trial, _ = de.ask(jax.random.key(seed), state, params)
        diff = (np.asarray(trial[:, 0]) - 128.0) / 0.5
        for i, d in enumerate(diff):
            b = [
                j for j in range(8) for k in range(8) if j != k and abs(2.0**j - 2.0**k - d) < 1e-6
            ]
            assert len(b) == 1, (i, d)
            c = [k for k in range(8) if abs(2.0 ** b[0] - 2.0**k - d) < 1e-6][0]
            assert len({i, 7, b[0], c}) == (3 if i == 7 else 4)


def test_more_than_one_difference_vector_is_refused_not_ignored():
    with pytest.raises(ValueError, match="num_diff must be 1"):
        search.SkipSamplingDE(population_size=8, solution=jnp.zeros(3), num_diff=2)
    de = search.SkipSamplingDE(population_size=8, solution=jnp.zeros(3))
    assert de.num_diff == 1


def test_evosax_still_has_the_private_de_interface_the_override_relies_on():
    # SkipSamplingDE overrides evosax's private DE `_ask` and sets dithering fields only
    # some releases have: a new evosax must fail here, loudly and by name, not drift.
    import importlib.metadata

    version = importlib.metadata.version("evosax")
    try:
        search.check_evosax.__wrapped__()
    except RuntimeError as error:
        pytest.fail(f"evosax {version}: {error}")
    # evosax's public ask must run the override: its trial equals the override's own (up
    # to float rounding: one side is compiled, and at XLA's default optimisation level
    # 5 of the 24 genes differed in the last bit; evosax's own trial would differ wholly).
    de, params = search.make_strategy(3, 8, "best1bin", (0.5, 1.0), 0.7)
    genes = jax.random.uniform(jax.random.key(1), (8, 3))
    state = de.init(jax.random.key(0), genes, jnp.arange(8.0), params)
    public, _ = de.ask(jax.random.key(2), state, params)
    own, _ = search.SkipSamplingDE._ask(de, jax.random.key(2), state, params)
    np.testing.assert_allclose(
        public, own, rtol=1e-6, err_msg=f"evosax {version}: DifferentialEvolution.ask bypasses _ask"
    )


def test_a_changed_evosax_interface_is_refused_naming_the_release(monkeypatch):
    import dataclasses
    import importlib.metadata

    from evosax.algorithms.population_based import differential_evolution as evosax_de

    fields = [f for f in dataclasses.fields(evosax_de.Params) if "_min" not in f.name]
    monkeypatch.setattr(dataclasses, "fields", lambda cls: fields)
    version = importlib.metadata.version("evosax")
    with pytest.raises(RuntimeError, match=f"evosax {version} .*differential_weight_min"):
        search.check_evosax.__wrapped__()
