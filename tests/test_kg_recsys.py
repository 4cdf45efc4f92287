"""Knowledge-graph walking and sequential recommendation domains."""

import jax
import jax.numpy as jnp
import numpy as np

from mctx_planner.domains import knowledge_graph as kg
from mctx_planner.domains import recommendation as rc
from mctx_planner.search import (SearchConfig, make_planner, true_model,
                                 uniform_predict_fn)
from mctx_planner.testing import check_domain

Q = {name: i for i, name in enumerate(kg.BASE_RELATIONS)}
QR = {name: i for i, (name, _) in enumerate(kg.QUERY_RELATIONS)}


# -- knowledge graph: generator -----------------------------------------------

def _tiny_family() -> kg.KnowledgeGraph:
    """A hand-checked family (ids in brackets)::

        A[0] = B[1]                  generation 0 (a married couple)
        +-- C[2] = E[4]              C, D children of A and B; E, H in-laws
        |   +-- F[6] = K[9]          F, G children of C and E; K an in-law
        |   |   +-- L[10]            child of F and K
        |   +-- G[7]
        +-- D[3] = H[5]
            +-- I[8]                 child of D and H
    """
    parents = [(-1, -1), (-1, -1), (0, 1), (0, 1), (-1, -1), (-1, -1),
               (2, 4), (2, 4), (3, 5), (-1, -1), (6, 9)]
    spouses = [(0, 1), (2, 4), (3, 5), (6, 9)]
    generation = [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3]
    gender = [0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0]
    return kg.family_graph_from_people(parents, spouses, generation, gender,
                                       seed=0, test_fraction=0.3)


def _answers(graph, entity, relation):
    return set(kg.bfs_answer_oracle(graph, entity, QR[relation]).tolist())


def test_tiny_family_relations_are_correct():
    g = _tiny_family()
    edges = {tuple(e) for e in g.edges.tolist()}
    assert (0, Q["parent_of"], 2) in edges and (2, Q["child_of"], 0) in edges
    assert (2, Q["sibling_of"], 3) in edges and (4, Q["spouse_of"], 2) in edges
    assert (4, Q["sibling_of"], 3) not in edges  # in-laws are not siblings
    expected = {
        (0, "grandparent_of"): {6, 7, 8},
        (6, "grandchild_of"): {0, 1},
        (3, "aunt_uncle_of"): {6, 7},
        (6, "niece_nephew_of"): {3},
        (6, "cousin_of"): {8},
        (8, "cousin_of"): {6, 7},
        (2, "sibling_in_law_of"): {5},
        (4, "sibling_in_law_of"): {3},
        (9, "sibling_in_law_of"): {7},
        (0, "parent_in_law_of"): {4, 5},
        (4, "child_in_law_of"): {0, 1},
        (0, "great_grandparent_of"): {10},
        (4, "grandparent_of"): {10},
        (5, "cousin_of"): set(),
    }
    for (e, r), want in expected.items():
        assert _answers(g, e, r) == want, (e, r)
    # The stored queries are exactly the non-empty oracle answers.
    stored = {(e, r): a for e, r, a in g.train.as_tuples() + g.test.as_tuples()}
    for (e, r), want in expected.items():
        assert stored.get((e, QR[r]), set()) == want
    # follow_path is the raw composition: grandparents of F via child_of x2.
    assert kg.follow_path(g, {6}, (Q["child_of"], Q["child_of"])) == {0, 1}


def test_generator_deterministic_sized_and_consistent():
    g1, g2 = kg.make_family_graph(3), kg.make_family_graph(3)
    for a, b in zip(g1, g2):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(g1.train.answers, g2.train.answers)
    assert g1.fingerprint() == g2.fingerprint()
    assert kg.make_family_graph(4).fingerprint() != g1.fingerprint()
    for seed in range(3):
        g = kg.make_family_graph(seed)
        assert 60 <= g.num_entities <= 150
        assert set(g.train.relation.tolist()) == set(range(len(QR)))
        # The padded out-edge table holds exactly the edge list.
        heads = np.repeat(np.arange(g.num_entities), g.max_degree)
        table = np.stack([heads, g.out_relation.reshape(-1),
                          g.out_tail.reshape(-1)], 1)[g.out_mask.reshape(-1)]
        np.testing.assert_array_equal(table, g.edges)
        # Valid slots come first.
        assert np.all(np.diff(g.out_mask.astype(int), axis=1) <= 0)


def test_queries_need_two_hops_and_split_is_disjoint():
    g = kg.make_family_graph(0)
    neighbours = [set() for _ in range(g.num_entities)]
    for h, _, t in g.edges:
        neighbours[h].add(int(t))
    for queries in (g.train, g.test):
        assert queries.size > 0
        for e, r, ans in queries.as_tuples():
            assert ans and e not in ans
            assert not ans & neighbours[e], "an answer is one hop away"
            assert ans == set(kg.bfs_answer_oracle(g, e, r).tolist())
    train = set(zip(g.train.entity.tolist(), g.train.relation.tolist()))
    test = set(zip(g.test.entity.tolist(), g.test.relation.tolist()))
    assert not train & test
    assert len(train) == g.train.size and len(test) == g.test.size
    assert 0.1 < len(test) / (len(train) + len(test)) < 0.3


# -- knowledge graph: domain -----------------------------------------------------

def test_kg_walk_conforms_to_protocol():
    check_domain(kg.KnowledgeGraphWalk(), num_episodes=1, batch_size=8)


def test_kg_walk_semantics_on_tiny_family():
    g = _tiny_family()
    domain = kg.KnowledgeGraphWalk(g, max_hops=4)
    assert domain.num_actions == g.max_degree + 1
    assert domain.observation_shape[0] <= 2000
    assert domain == kg.KnowledgeGraphWalk(g, max_hops=4)
    assert hash(domain) == hash(kg.KnowledgeGraphWalk(g, max_hops=4))
    assert domain != kg.KnowledgeGraphWalk(g, split="test")
    step = jax.jit(domain.step)

    def slot(entity, relation, tail):
        ok = ((g.out_relation[entity] == Q[relation]) & (g.out_tail[entity] == tail)
              & g.out_mask[entity])
        return int(np.flatnonzero(ok)[0])

    answers = np.zeros(g.num_entities, bool)
    answers[[6, 7, 8]] = True
    s = domain.init_from(0, QR["grandparent_of"], answers)
    legal = np.asarray(s.legal_action_mask)
    assert legal[-1] and legal[:-1].sum() == g.out_mask[0].sum()
    s = step(s, slot(0, "parent_of", 2))
    assert int(s.entity) == 2 and int(s.path[0]) == Q["parent_of"]
    s = step(s, slot(2, "parent_of", 7))
    assert float(s.reward) == 0.0 and not bool(s.terminated)
    s = step(s, domain.stop_action)
    assert float(s.reward) == 1.0 and bool(s.terminated)
    assert bool(np.all(s.legal_action_mask))
    again = step(s, 0)  # ended states absorb
    assert float(again.reward) == 0.0 and int(again.step_count) == 3

    # STOP on a non-answer gives 0; after max_hops only STOP is legal.
    s = domain.init_from(0, QR["grandparent_of"], answers)
    s = step(s, slot(0, "parent_of", 2))
    assert float(step(s, domain.stop_action).reward) == 0.0
    for _ in range(3):
        s = step(s, 0)
    assert int(s.step_count) == 4
    assert np.flatnonzero(np.asarray(s.legal_action_mask)).tolist() == [
        domain.stop_action]


def test_kg_baselines_and_pure_search():
    """Random walk << search with a uniform network << BFS oracle (= 1)."""
    domain = kg.KnowledgeGraphWalk()
    test = domain.graph.test
    random_walk = kg.random_walk_hits_at_1(domain.graph, test,
                                           jax.random.PRNGKey(0))
    oracle = kg.oracle_hits_at_1(domain.graph, test)
    pattern = kg.hits_at_1(domain, kg.pattern_oracle_act(domain), test)
    model = true_model(domain, uniform_predict_fn(domain.num_actions))
    planner = make_planner(model, SearchConfig(num_simulations=32))
    search = kg.hits_at_1(
        domain, lambda k, s: planner.search(None, k, s).action, test,
        jax.random.PRNGKey(1))
    assert oracle == 1.0
    assert random_walk < 0.25
    assert 0.6 < pattern < 1.0   # pattern-following without lookahead
    assert search > random_walk + 0.08


# -- recommendation ---------------------------------------------------------------

def test_recommendation_conforms_to_protocol():
    domain = rc.Recommendation()
    assert domain.is_stochastic and domain.num_chance_outcomes == 2
    assert domain == rc.Recommendation() and domain != rc.Recommendation(seed=1)
    check_domain(domain, num_episodes=1, batch_size=8)


def test_retrieval_is_top_k_distinct_and_fresh():
    domain = rc.Recommendation()
    items = domain.catalogue.embeddings
    rng = np.random.default_rng(0)
    query = rng.normal(size=items.shape[1]).astype(np.float32)
    order = np.argsort(-(items @ query))
    shown = np.array([order[0], order[3], -1, order[7]], np.int32)
    ids, sims = jax.jit(rc.retrieve_top_k, static_argnums=3)(
        jnp.asarray(items), jnp.asarray(query), jnp.asarray(shown), 8)
    ids, sims = np.asarray(ids), np.asarray(sims)
    expected = [i for i in order if i not in shown[shown >= 0]][:8]
    np.testing.assert_array_equal(ids, expected)
    assert len(set(ids.tolist())) == 8 and np.all(np.diff(sims) <= 0)
    np.testing.assert_allclose(sims, items[ids] @ query, rtol=1e-5, atol=1e-6)

    # Inside the domain: candidates never repeat the recently shown items.
    def run(key):
        s = domain.init(key)

        def body(s, _):
            s = domain.step(s, jnp.int32(0))
            return s, (s.candidates, s.shown, s.similarity, s.estimate)
        return jax.lax.scan(body, s, None, length=12)[1]

    cands, shown, sims, est = jax.jit(run)(jax.random.PRNGKey(3))
    cands, shown = np.asarray(cands), np.asarray(shown)
    for c, h in zip(cands, shown):
        assert len(set(c.tolist())) == domain.num_candidates
        assert not set(c.tolist()) & set(h[h >= 0].tolist())
    np.testing.assert_allclose(
        np.asarray(sims), np.einsum("tkd,td->tk", items[cands], np.asarray(est)),
        rtol=1e-4, atol=1e-5)


def test_planning_beats_greedy_recommendation():
    """Greedy top-1 is myopic: diversifying and search both beat it."""
    domain = rc.Recommendation()
    key = jax.random.PRNGKey(0)
    traces = []

    def greedy_act(k, s):
        traces.append(1)
        return rc.greedy_top1_act(k, s)
    greedy, _ = rc.evaluate_policy(domain, greedy_act, 64, key)
    # The same policy object again: cached, not traced (compiled) again.
    assert rc.evaluate_policy(domain, greedy_act, 64, key)[0] == greedy
    assert len(traces) == 1
    diverse, _ = rc.evaluate_policy(domain, rc.diversify_act(domain), 64, key)
    model = true_model(domain, uniform_predict_fn(domain.num_actions))
    planner = make_planner(model, SearchConfig(num_simulations=32))
    search, ci = rc.evaluate_policy(domain, rc.search_act_fn(planner), 64, key)
    assert diverse > 1.2 * greedy
    assert search > greedy
    assert ci > 0
