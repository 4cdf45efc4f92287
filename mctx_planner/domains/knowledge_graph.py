"""Knowledge-graph reasoning as planning: walk a synthetic family graph.

This is the M-Walk idea (Shen et al., 2018, "M-Walk: Learning to Walk over
Graphs using Monte Carlo Tree Search"): answering a query ``(e, r, ?)`` is an
episode in which an agent starts at entity ``e`` and follows edges of the
graph, one hop per move, and finally says "STOP / the answer is here". The
reward is 1 when it stops on a correct answer, so search over the graph with
the true model is planning, and a learned policy/value generalises to new
queries of the same relation.

Everything is synthetic and deterministic from a seed (no downloads):

* :func:`make_family_graph` grows a family tree of several generations in
  numpy: ``num_families`` founding couples; children; marriages across
  families (never between blood relatives) or to outsiders who have no parents
  in the graph; children of those couples; and so on.
* Base relations (the edges an agent can walk): ``parent_of``, ``child_of``,
  ``sibling_of``, ``spouse_of``. A triple ``(h, r, t)`` reads "h r t", e.g.
  ``(h, parent_of, t)``: h is a parent of t. Walking an edge ``r`` from ``h``
  goes to ``t``.
* Query relations are compositions of base relations (path patterns, read in
  hop order). The answers of ``(x, q, ?)`` are every ``t != x`` reached from
  ``x`` by one of the patterns of ``q`` (:data:`QUERY_RELATIONS`), e.g.
  ``grandparent_of = parent_of / parent_of`` (x is a grandparent of t),
  ``cousin_of = child_of / sibling_of / parent_of`` (3 hops),
  ``sibling_in_law_of = spouse_of / sibling_of | sibling_of / spouse_of``.
  Relations are "by blood" (an aunt by marriage is not an ``aunt_uncle_of``).
  Every answer is at least 2 hops away from the query entity.

:class:`KnowledgeGraphWalk` is the planning domain; :func:`hits_at_1`
evaluates any jittable policy on a query set, and :func:`bfs_answer_oracle`,
:func:`random_walk_hits_at_1` and :func:`pattern_oracle_act` are reference
points. On the default graph (seed 0: 77 people, 368 edges, 234 train / 58
test queries, 9 actions) the test hits@1 are: random walk 0.05, pattern
oracle without lookahead 0.83, BFS oracle 1.0, and pure search (true model,
uniform prior, zero value, Gumbel MuZero) 0.38 / 0.43 / 0.52 with 32 / 64 /
128 simulations.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mctx_planner.domains.base import Domain, select_state

#: Names of the base relations (edge types), indexed by relation id.
BASE_RELATIONS: Tuple[str, ...] = ("parent_of", "child_of", "sibling_of",
                                   "spouse_of")
PARENT_OF, CHILD_OF, SIBLING_OF, SPOUSE_OF = 0, 1, 2, 3
_P, _C, _S, _SP = PARENT_OF, CHILD_OF, SIBLING_OF, SPOUSE_OF

#: Query relations: ``(name, patterns)``; each pattern is a tuple of base
#: relation ids in hop order, and the answers are the union over patterns.
QUERY_RELATIONS: Tuple[Tuple[str, Tuple[Tuple[int, ...], ...]], ...] = (
    ("grandparent_of", ((_P, _P),)),             # x's grandchildren
    ("grandchild_of", ((_C, _C),)),              # x's grandparents
    ("aunt_uncle_of", ((_S, _P),)),              # x's siblings' children
    ("niece_nephew_of", ((_C, _S),)),            # x's parents' siblings
    ("cousin_of", ((_C, _S, _P),)),              # parents' siblings' children
    ("sibling_in_law_of", ((_SP, _S), (_S, _SP))),
    ("parent_in_law_of", ((_P, _SP),)),          # x's children's spouses
    ("child_in_law_of", ((_SP, _C),)),           # x's spouse's parents
    ("great_grandparent_of", ((_P, _P, _P),)),   # x's great-grandchildren
)

#: Number of random (identity) features per entity in ``entity_features``.
NUM_RANDOM_FEATURES = 4


class Queries(NamedTuple):
    """A set of ``N`` queries ``(entity, query_relation, answers)``.

    Attributes:
      entity: ``[N]`` int32 query (start) entities.
      relation: ``[N]`` int32 query relation ids (index into
        :data:`QUERY_RELATIONS`).
      answers: ``[N, num_entities]`` bool, the answer set of each query.
    """

    entity: np.ndarray
    relation: np.ndarray
    answers: np.ndarray

    @property
    def size(self) -> int:
        """``N``, the number of queries."""
        return int(np.shape(self.entity)[0])

    def as_tuples(self) -> List[Tuple[int, int, Set[int]]]:
        """The queries as a list of ``(entity, relation, set of answers)``."""
        ans = np.asarray(self.answers)
        return [(int(e), int(r), set(np.flatnonzero(a).tolist()))
                for e, r, a in zip(np.asarray(self.entity),
                                   np.asarray(self.relation), ans)]


class KnowledgeGraph(NamedTuple):
    """A family knowledge graph (numpy arrays; ``E`` entities, ``D`` max degree).

    Attributes:
      num_entities: ``E``.
      relation_names: names of the base relations (:data:`BASE_RELATIONS`).
      query_relation_names: names of the query relations.
      query_patterns: per query relation, its path patterns (tuples of base
        relation ids in hop order).
      edges: ``[M, 3]`` int32 triples ``(head, relation, tail)``, sorted.
      out_relation: ``[E, D]`` int32 relation of each out-edge slot (0 where
        padded).
      out_tail: ``[E, D]`` int32 tail of each out-edge slot (the entity itself
        where padded).
      out_mask: ``[E, D]`` bool, which slots hold an edge. Slots are sorted by
        ``(relation, tail)`` and valid slots come first.
      generation: ``[E]`` int32 generation (0 = founders).
      gender: ``[E]`` int32 (0 or 1; only an entity feature).
      entity_features: ``[E, F]`` float32 fixed features (see
        :func:`entity_features`).
      train: the training :class:`Queries`.
      test: the held-out :class:`Queries`, disjoint from ``train`` as
        ``(entity, relation)`` pairs.
    """

    num_entities: int
    relation_names: Tuple[str, ...]
    query_relation_names: Tuple[str, ...]
    query_patterns: Tuple[Tuple[Tuple[int, ...], ...], ...]
    edges: np.ndarray
    out_relation: np.ndarray
    out_tail: np.ndarray
    out_mask: np.ndarray
    generation: np.ndarray
    gender: np.ndarray
    entity_features: np.ndarray
    train: Queries
    test: Queries

    @property
    def max_degree(self) -> int:
        """``D``: width of the padded out-edge table."""
        return int(self.out_tail.shape[1])

    def fingerprint(self) -> str:
        """A short content hash (used to hash/compare domains)."""
        h = hashlib.sha1()
        for a in (self.edges, self.entity_features, self.train.entity,
                  self.train.relation, self.test.entity, self.test.relation):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


# --------------------------------------------------------------------------
# Graph construction (numpy, host side)
# --------------------------------------------------------------------------


def _adjacency(num_entities: int, edges: np.ndarray) -> List[List[Set[int]]]:
    """``adj[r][h]`` = set of tails of relation ``r`` out of ``h``."""
    adj = [[set() for _ in range(num_entities)] for _ in BASE_RELATIONS]
    for h, r, t in edges:
        adj[int(r)][int(h)].add(int(t))
    return adj


def follow_path(graph_or_edges, sources: Set[int],
                pattern: Sequence[int]) -> Set[int]:
    """Entities reached from ``sources`` by walking ``pattern`` (breadth-first).

    Args:
      graph_or_edges: a :class:`KnowledgeGraph`, or a tuple
        ``(num_entities, edges [M, 3])``.
      sources: starting entity ids.
      pattern: base relation ids in hop order.

    Returns:
      The set of entity ids at the end of every path matching ``pattern``.
    """
    if isinstance(graph_or_edges, KnowledgeGraph):
        num_entities, edges = graph_or_edges.num_entities, graph_or_edges.edges
    else:
        num_entities, edges = graph_or_edges
    adj = _adjacency(num_entities, np.asarray(edges))
    return _follow(adj, sources, pattern)


def _follow(adj, sources: Set[int], pattern: Sequence[int]) -> Set[int]:
    frontier = set(sources)
    for r in pattern:
        frontier = set().union(*(adj[r][e] for e in frontier)) if frontier else set()
    return frontier


def bfs_answer_oracle(graph: KnowledgeGraph, entity: int,
                      query_relation: int) -> np.ndarray:
    """The breadth-first oracle: answers of ``(entity, query_relation, ?)``.

    It knows the relation's path patterns (:data:`QUERY_RELATIONS`) and
    expands every matching path breadth-first, so its hits@1 (answer = any
    element of this set) is 1 on every query with an answer. It defines the
    answer sets stored in the graph's queries.

    Args:
      graph: the graph.
      entity: the query entity.
      query_relation: index into ``graph.query_relation_names``.

    Returns:
      Sorted ``[n]`` int32 answer entity ids (never ``entity`` itself).
    """
    adj = _adjacency(graph.num_entities, graph.edges)
    return _oracle(adj, entity, graph.query_patterns[query_relation])


def _oracle(adj, entity: int, patterns) -> np.ndarray:
    found: Set[int] = set()
    for pattern in patterns:
        found |= _follow(adj, {entity}, pattern)
    found.discard(entity)
    return np.array(sorted(found), np.int32)


def oracle_hits_at_1(graph: KnowledgeGraph, queries: Queries) -> float:
    """Hits@1 of the BFS oracle predicting the smallest id of its answer set.

    A sanity reference (1.0 whenever the stored answers come from the same
    patterns). Host-side numpy.
    """
    adj = _adjacency(graph.num_entities, graph.edges)
    hits = []
    for e, r, ans in zip(np.asarray(queries.entity), np.asarray(queries.relation),
                         np.asarray(queries.answers)):
        pred = _oracle(adj, int(e), graph.query_patterns[int(r)])
        hits.append(bool(pred.size) and bool(ans[pred[0]]))
    return float(np.mean(hits)) if hits else 0.0


def entity_features(generation: np.ndarray, gender: np.ndarray,
                    out_relation: np.ndarray, out_mask: np.ndarray,
                    seed: int) -> np.ndarray:
    """Fixed entity features ``[E, 2 + 4 + NUM_RANDOM_FEATURES]`` float32.

    * generation / max generation (structure: who is older);
    * gender (0/1, shifted to -1/+1);
    * out-degree per base relation / max degree (structure: e.g. "has
      children", which lets a policy avoid dead ends);
    * ``NUM_RANDOM_FEATURES`` i.i.d. N(0, 1/2) features from ``seed`` (an
      identity code: lets a network tell entities apart, e.g. not walk back).

    The structural features are what lets a policy generalise to held-out
    queries; nothing is learned here.
    """
    num_entities, max_degree = out_mask.shape
    gen = generation.astype(np.float32) / max(1, int(generation.max(initial=0)))
    sex = 2.0 * gender.astype(np.float32) - 1.0
    counts = np.stack([np.sum(out_mask & (out_relation == r), axis=1)
                       for r in range(len(BASE_RELATIONS))], axis=1)
    counts = counts.astype(np.float32) / max(1, max_degree)
    rng = np.random.default_rng([seed, 2])
    rand = rng.normal(0.0, np.sqrt(0.5), (num_entities, NUM_RANDOM_FEATURES))
    return np.concatenate([gen[:, None], sex[:, None], counts,
                           rand.astype(np.float32)], axis=1).astype(np.float32)


def family_graph_from_people(parents: Sequence[Tuple[int, int]],
                             spouses: Sequence[Tuple[int, int]],
                             generation: Sequence[int],
                             gender: Sequence[int], *, seed: int = 0,
                             test_fraction: float = 0.2) -> KnowledgeGraph:
    """Builds the graph, features and queries of an explicit family.

    Args:
      parents: per person ``i``, its two parents ``(p1, p2)`` (``-1`` for
        unknown / outside the graph).
      spouses: married pairs ``(a, b)``.
      generation: ``[E]`` generation of each person.
      gender: ``[E]`` 0 or 1.
      seed: seeds the random entity features and the train/test split.
      test_fraction: fraction of the queries held out as ``test``.

    Returns:
      A :class:`KnowledgeGraph`. Siblings are people sharing a known parent.
      Queries are every ``(entity, query_relation)`` with a non-empty answer
      set, shuffled by ``seed`` and split into train/test.
    """
    num_entities = len(parents)
    triples = set()
    children_of: Dict[int, Set[int]] = {}
    for child, pair in enumerate(parents):
        for p in pair:
            if p >= 0:
                triples.add((p, PARENT_OF, child))
                triples.add((child, CHILD_OF, p))
                children_of.setdefault(p, set()).add(child)
    for kids in children_of.values():
        for a in kids:
            for b in kids:
                if a != b:
                    triples.add((a, SIBLING_OF, b))
    for a, b in spouses:
        triples.add((a, SPOUSE_OF, b))
        triples.add((b, SPOUSE_OF, a))
    edges = np.array(sorted(triples), np.int32).reshape(-1, 3)

    degree = np.bincount(edges[:, 0], minlength=num_entities)
    max_degree = max(1, int(degree.max(initial=0)))
    out_relation = np.zeros((num_entities, max_degree), np.int32)
    out_tail = np.tile(np.arange(num_entities, dtype=np.int32)[:, None],
                       (1, max_degree))
    out_mask = np.zeros((num_entities, max_degree), bool)
    fill = np.zeros(num_entities, np.int64)
    for h, r, t in edges:  # sorted by (head, relation, tail)
        out_relation[h, fill[h]] = r
        out_tail[h, fill[h]] = t
        out_mask[h, fill[h]] = True
        fill[h] += 1

    generation = np.asarray(generation, np.int32)
    gender = np.asarray(gender, np.int32)
    feats = entity_features(generation, gender, out_relation, out_mask, seed)

    adj = _adjacency(num_entities, edges)
    patterns = tuple(p for _, p in QUERY_RELATIONS)
    q_ent, q_rel, q_ans = [], [], []
    for q, pats in enumerate(patterns):
        for e in range(num_entities):
            ans = _oracle(adj, e, pats)
            if ans.size:
                mask = np.zeros(num_entities, bool)
                mask[ans] = True
                q_ent.append(e)
                q_rel.append(q)
                q_ans.append(mask)
    q_ent = np.array(q_ent, np.int32)
    q_rel = np.array(q_rel, np.int32)
    q_ans = np.array(q_ans, bool).reshape(-1, num_entities)
    order = np.random.default_rng([seed, 3]).permutation(len(q_ent))
    num_test = int(round(test_fraction * len(q_ent)))
    test_idx, train_idx = np.sort(order[:num_test]), np.sort(order[num_test:])

    def subset(idx):
        return Queries(q_ent[idx], q_rel[idx], q_ans[idx])

    return KnowledgeGraph(
        num_entities=num_entities,
        relation_names=BASE_RELATIONS,
        query_relation_names=tuple(n for n, _ in QUERY_RELATIONS),
        query_patterns=patterns,
        edges=edges, out_relation=out_relation, out_tail=out_tail,
        out_mask=out_mask, generation=generation, gender=gender,
        entity_features=feats, train=subset(train_idx), test=subset(test_idx))


def make_family_graph(seed: int = 0, num_families: int = 10,
                      num_generations: int = 4, max_children: int = 3,
                      marriage_prob: float = 0.85, outsider_prob: float = 0.5,
                      test_fraction: float = 0.2) -> KnowledgeGraph:
    """Grows a synthetic family tree (numpy, deterministic from ``seed``).

    Generation 0 is ``num_families`` founding couples, each with 1 to
    ``max_children`` children. In every later generation (except the last)
    people marry with probability ``marriage_prob``: first to an
    opposite-gender person of the same generation who shares no ancestor with
    them (cross-family marriages link the trees), else, with probability
    ``outsider_prob``, to a new outsider of that generation with no parents in
    the graph. Each couple of generation ``g < num_generations - 1`` has 0 to
    ``max_children`` children (0 makes the dead ends that lookahead avoids).

    With the defaults (10 families, 4 generations) the graph has about
    75-95 people, 230-290 train and 55-75 test queries, and a max out-degree
    of 8 (so 9 actions).

    Args:
      seed: the only source of randomness (people, features, split).
      num_families: founding couples.
      num_generations: generations, founders included (>= 2).
      max_children: most children per couple.
      marriage_prob: probability that a person of a middle generation marries.
      outsider_prob: probability that an unmatched person marries an outsider.
      test_fraction: fraction of the queries in the test split.

    Returns:
      A :class:`KnowledgeGraph` (see :func:`family_graph_from_people`).
    """
    if num_generations < 2 or num_families < 1 or max_children < 1:
        raise ValueError("need num_generations >= 2, num_families >= 1, "
                         "max_children >= 1")
    rng = np.random.default_rng([seed, 1])
    parents: List[Tuple[int, int]] = []
    generation: List[int] = []
    gender: List[int] = []
    ancestors: List[Set[int]] = []
    spouses: List[Tuple[int, int]] = []

    def person(gen: int, sex: int, pa: Tuple[int, int] = (-1, -1)) -> int:
        idx = len(parents)
        parents.append(pa)
        generation.append(gen)
        gender.append(sex)
        anc: Set[int] = set()
        for p in pa:
            if p >= 0:
                anc |= {p} | ancestors[p]
        ancestors.append(anc)
        return idx

    def have_children(couples, gen, low):
        born = []
        for a, b in couples:
            for _ in range(int(rng.integers(low, max_children + 1))):
                born.append(person(gen, int(rng.integers(2)), (a, b)))
        return born

    founders = [(person(0, 0), person(0, 1)) for _ in range(num_families)]
    spouses.extend(founders)
    current = have_children(founders, 1, 2)
    for gen in range(1, num_generations - 1):
        order = [current[i] for i in rng.permutation(len(current))]
        married: Set[int] = set()
        couples = []
        for a in order:
            if a in married or rng.random() >= marriage_prob:
                continue
            match = -1
            for b in order:
                if (b != a and b not in married and gender[b] != gender[a]
                        and not ({a} | ancestors[a]) & ({b} | ancestors[b])):
                    match = b
                    break
            if match < 0:
                if rng.random() >= outsider_prob:
                    continue
                match = person(gen, 1 - gender[a])
            married |= {a, match}
            couples.append((a, match))
        spouses.extend(couples)
        current = have_children(couples, gen + 1, 0)
    return family_graph_from_people(parents, spouses, generation, gender,
                                    seed=seed, test_fraction=test_fraction)


# --------------------------------------------------------------------------
# The planning domain
# --------------------------------------------------------------------------


@chex.dataclass(frozen=True)
class KGWalkState:
    """State of one query episode (no batch axis).

    ``E`` entities, ``A = D + 1`` actions, ``H = max_hops``.

    Attributes:
      observation: ``[O]`` float32 (layout:
        :meth:`KnowledgeGraphWalk.observation_layout`).
      legal_action_mask: ``[A]`` bool: valid out-edge slots (while hops
        remain) and STOP (always).
      reward: ``[]`` float32, 1 after STOP on a correct answer, else 0.
      terminated: ``[]`` bool, the agent took STOP.
      truncated: ``[]`` bool, ``step_count >= max_episode_steps``.
      current_player: ``[]`` int32, always 0.
      step_count: ``[]`` int32 moves so far (= hops taken before STOP).
      entity: ``[]`` int32 current entity.
      start: ``[]`` int32 query entity.
      query_relation: ``[]`` int32 query relation id.
      answers: ``[E]`` bool answer set of the query.
      path: ``[H]`` int32 relation taken at each hop, ``-1`` if none yet.
    """

    observation: chex.Array
    legal_action_mask: chex.Array
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    current_player: chex.Array
    step_count: chex.Array
    entity: chex.Array
    start: chex.Array
    query_relation: chex.Array
    answers: chex.Array
    path: chex.Array


class KnowledgeGraphWalk(Domain):
    """Answer a knowledge-graph query by walking the graph (M-Walk).

    * Episode: ``init(key)`` samples a query ``(entity, query_relation)``
      uniformly from the split's queries (``split="train"`` or ``"test"``);
      the agent starts at ``entity``.
    * Actions: ``A = D + 1`` where ``D`` is the graph's max out-degree. Action
      ``i < D`` walks the ``i``-th out-edge of the current entity (slots sorted
      by ``(relation, tail)``); action ``D`` (:attr:`stop_action`) is STOP:
      "the answer is the current entity".
    * Legal: the current entity's valid slots while ``step_count <
      max_hops``, and STOP always (so on the last move STOP is the only legal
      action and an episode of legal moves always ends by STOP). An illegal
      hop is well defined: the agent stays, and the step counts.
    * Reward: 1 if STOP at an answer of the query that is not the start
      entity, else 0. ``terminated`` on STOP; ``truncated`` when
      ``step_count >= max_episode_steps = max_hops + 1`` (only reachable with
      illegal moves). ``reward_range = (0, 1)``, ``discount = 1``.
    * Observation ``[O]`` float32, concatenating (see
      :meth:`observation_layout`): query relation one-hot ``[Q]``; relation
      history one-hot ``[H, R]``; step fraction; "at start" flag; features of
      the current and start entities ``[2, F]``; and per out-edge slot
      ``[D, R + F + 2]``: relation one-hot, tail features, "tail is the
      start", "slot valid". Entity features are fixed (structural + random
      identity codes, :func:`entity_features`); with the defaults ``O`` is
      about 200.

    Args:
      graph: the :class:`KnowledgeGraph`; ``None`` builds
        ``make_family_graph(seed, num_families)``.
      split: ``"train"`` or ``"test"``: the queries ``init`` samples.
      max_hops: most hops before STOP (>= the longest query pattern, 3).
      seed: graph seed when ``graph`` is None.
      num_families: graph size when ``graph`` is None.
    """

    name = "knowledge_graph"
    num_players = 1
    reward_range = (0.0, 1.0)
    discount = 1.0

    def __init__(self, graph: Optional[KnowledgeGraph] = None,
                 split: str = "train", max_hops: int = 4, seed: int = 0,
                 num_families: int = 10):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if graph is None:
            graph = make_family_graph(seed, num_families=num_families)
        longest = max(len(p) for pats in graph.query_patterns for p in pats)
        if max_hops < longest:
            raise ValueError(f"max_hops must be >= {longest}, got {max_hops}")
        queries = graph.train if split == "train" else graph.test
        if queries.size == 0:
            raise ValueError(f"the graph has no {split} queries")
        self.graph = graph
        self.split = split
        self.max_hops = int(max_hops)
        self.max_episode_steps = self.max_hops + 1
        self.max_degree = graph.max_degree
        self.num_actions = self.max_degree + 1
        self.stop_action = self.max_degree
        self.num_entities = graph.num_entities
        self.num_relations = len(graph.relation_names)
        self.num_query_relations = len(graph.query_relation_names)
        self.feature_dim = int(graph.entity_features.shape[1])
        self._id = (split, self.max_hops, graph.fingerprint())
        self._out_relation = jnp.asarray(graph.out_relation)
        self._out_tail = jnp.asarray(graph.out_tail)
        self._out_mask = jnp.asarray(graph.out_mask)
        self._features = jnp.asarray(graph.entity_features)
        self.queries = Queries(jnp.asarray(queries.entity),
                               jnp.asarray(queries.relation),
                               jnp.asarray(queries.answers))
        self._patterns, self._pattern_lengths = _pattern_table(
            graph.query_patterns, self.max_hops)
        layout = self.observation_layout()
        self.observation_shape = (max(stop for _, stop in layout.values()),)

    def __hash__(self):
        return hash((type(self), self._id))

    def __eq__(self, other):
        return type(self) is type(other) and self._id == other._id

    def observation_layout(self) -> Dict[str, Tuple[int, int]]:
        """``name -> (start, stop)`` slices of the flat observation."""
        q, r, f, h, d = (self.num_query_relations, self.num_relations,
                         self.feature_dim, self.max_hops, self.max_degree)
        sizes = (("query_relation", q), ("path", h * r), ("step_fraction", 1),
                 ("at_start", 1), ("current_entity", f), ("start_entity", f),
                 ("edges", d * (r + f + 2)))
        layout, offset = {}, 0
        for name, size in sizes:
            layout[name] = (offset, offset + size)
            offset += size
        return layout

    # -- protocol -----------------------------------------------------------

    def init(self, key: chex.PRNGKey) -> KGWalkState:
        """A query drawn uniformly from the split's queries."""
        index = jax.random.randint(key, (), 0, self.queries.size, jnp.int32)
        return self.init_query(index)

    def init_query(self, index: chex.Array) -> KGWalkState:
        """The first state of the split's query number ``index`` ([] int32)."""
        return self.init_from(self.queries.entity[index],
                              self.queries.relation[index],
                              self.queries.answers[index])

    def init_from(self, entity: chex.Array, relation: chex.Array,
                  answers: chex.Array) -> KGWalkState:
        """The first state of the query ``(entity [], relation [], answers [E])``."""
        entity = jnp.asarray(entity, jnp.int32)
        zero = jnp.int32(0)
        path = jnp.full((self.max_hops,), -1, jnp.int32)
        relation = jnp.asarray(relation, jnp.int32)
        return KGWalkState(
            observation=self._observation(entity, entity, relation, path, zero),
            legal_action_mask=self._legal(entity, zero),
            reward=jnp.float32(0.0),
            terminated=jnp.bool_(False),
            truncated=jnp.bool_(False),
            current_player=zero,
            step_count=zero,
            entity=entity,
            start=entity,
            query_relation=relation,
            answers=jnp.asarray(answers, jnp.bool_),
            path=path,
        )

    def step(self, state: KGWalkState, action: chex.Array) -> KGWalkState:
        """Walks out-edge slot ``action`` or STOPs (``action == D``)."""
        action = jnp.asarray(action, jnp.int32)
        ended = state.terminated | state.truncated
        stop = action == self.stop_action
        slot = jnp.clip(action, 0, self.max_degree - 1)
        hop = (~stop & self._out_mask[state.entity, slot]
               & (state.step_count < self.max_hops))
        entity = jnp.where(hop, self._out_tail[state.entity, slot], state.entity)
        relation = jnp.where(hop, self._out_relation[state.entity, slot], -1)
        path = state.path.at[state.step_count].set(relation, mode="drop")
        reward = stop & state.answers[state.entity] & (state.entity != state.start)
        step_count = state.step_count + 1
        terminated = stop
        truncated = (step_count >= self.max_episode_steps) & ~terminated
        new = state.replace(
            observation=self._observation(entity, state.start,
                                          state.query_relation, path, step_count),
            legal_action_mask=jnp.where(terminated | truncated, True,
                                        self._legal(entity, step_count)),
            reward=reward.astype(jnp.float32),
            terminated=terminated,
            truncated=truncated,
            step_count=step_count,
            entity=entity,
            path=path,
        )
        return select_state(ended, state.replace(reward=jnp.float32(0.0)), new)

    # -- helpers ------------------------------------------------------------

    def _legal(self, entity: chex.Array, step_count: chex.Array) -> chex.Array:
        """``[A]`` bool: valid slots while hops remain, plus STOP."""
        edges = self._out_mask[entity] & (step_count < self.max_hops)
        return jnp.concatenate([edges, jnp.ones((1,), jnp.bool_)])

    def _observation(self, entity, start, relation, path, step_count):
        """The flat ``[O]`` float32 observation (see :meth:`observation_layout`)."""
        feats = self._features
        rel_1h = jax.nn.one_hot(self._out_relation[entity], self.num_relations)
        tails = self._out_tail[entity]
        valid = self._out_mask[entity]
        edges = jnp.concatenate([
            rel_1h, feats[tails], (tails == start)[:, None].astype(jnp.float32),
            valid[:, None].astype(jnp.float32)], axis=-1)
        edges = edges * valid[:, None]
        parts = [
            jax.nn.one_hot(relation, self.num_query_relations),
            jax.nn.one_hot(path, self.num_relations).reshape(-1),  # -1 -> zeros
            (step_count / self.max_episode_steps)[None],
            (entity == start)[None],
            feats[entity], feats[start], edges.reshape(-1)]
        return jnp.concatenate(
            [jnp.asarray(p, jnp.float32) for p in parts]).astype(jnp.float32)

    def render(self, state: KGWalkState) -> str:
        """One line: query, current entity and the relation path so far."""
        s = jax.device_get(state)
        names = self.graph.relation_names
        path = "/".join(names[int(r)] for r in np.asarray(s.path) if r >= 0)
        q = self.graph.query_relation_names[int(s.query_relation)]
        return (f"({int(s.start)}, {q}, ?) at {int(s.entity)} via "
                f"[{path}] step {int(s.step_count)} reward {float(s.reward)}")


def _pattern_table(patterns, max_hops: int) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """``([Q, P, H] int32 patterns padded with -1, [Q, P] int32 lengths)``;
    missing patterns have length ``H + 1`` (never matched)."""
    num_patterns = max(len(p) for p in patterns)
    table = np.full((len(patterns), num_patterns, max_hops), -1, np.int32)
    lengths = np.full((len(patterns), num_patterns), max_hops + 1, np.int32)
    for q, pats in enumerate(patterns):
        for i, pat in enumerate(pats):
            table[q, i, :len(pat)] = pat
            lengths[q, i] = len(pat)
    return jnp.asarray(table), jnp.asarray(lengths)


# --------------------------------------------------------------------------
# Policies and evaluation
# --------------------------------------------------------------------------

ActFn = Callable[[chex.PRNGKey, KGWalkState], chex.Array]


def _random_legal(key: chex.PRNGKey, mask: chex.Array) -> chex.Array:
    """``[B]`` int32 uniform draws among the True entries of ``mask [B, A]``."""
    logits = jnp.where(mask, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def random_act(key: chex.PRNGKey, states: KGWalkState) -> chex.Array:
    """Uniformly random legal action (STOP included) for ``[B]`` states."""
    return _random_legal(key, states.legal_action_mask)


def pattern_oracle_act(domain: KnowledgeGraphWalk) -> ActFn:
    """A policy that knows each relation's path patterns but not the graph.

    At each state it keeps the patterns consistent with the relations walked
    so far; if one is complete it STOPs, else it walks a uniformly random
    out-edge whose relation continues a consistent pattern, and STOPs if there
    is none (a dead end, e.g. a parent's sibling without children). It has no
    lookahead, so it can fail where search succeeds.

    Returns:
      ``act_fn(key, states [B]) -> [B] int32 actions``, jittable.
    """
    table, lengths = domain._patterns, domain._pattern_lengths
    hops = jnp.arange(domain.max_hops, dtype=jnp.int32)

    def one(key, state):
        pats = table[state.query_relation]                    # [P, H]
        lens = lengths[state.query_relation]                  # [P]
        t = state.step_count
        walked = hops < t
        consistent = jnp.all(~walked | (pats == state.path[None]), axis=-1)
        consistent &= lens >= t
        complete = jnp.any(consistent & (lens == t))
        nxt = pats[:, jnp.minimum(t, domain.max_hops - 1)]    # [P]
        go_on = consistent & (lens > t)
        rel = domain._out_relation[state.entity]               # [D]
        ok = jnp.any(go_on[None] & (rel[:, None] == nxt[None]), axis=-1)
        ok &= state.legal_action_mask[:-1]
        mask = jnp.concatenate([ok, jnp.zeros((1,), jnp.bool_)])
        walk = _random_legal(key, mask[None])[0]
        return jnp.where(complete | ~jnp.any(ok), domain.stop_action, walk)

    def act(key, states):
        keys = jax.random.split(key, states.step_count.shape[0])
        return jax.vmap(one)(keys, states)
    return act


def rollout_rewards(domain: KnowledgeGraphWalk, act_fn: ActFn,
                    queries: Queries, key: chex.PRNGKey) -> chex.Array:
    """Total reward of ``act_fn`` on each query (pure and jittable).

    Rolls all ``N`` queries in parallel with ``lax.scan`` over
    ``max_episode_steps`` moves (ended states absorb).

    Args:
      domain: the domain (its graph; the split does not matter here).
      act_fn: ``(key, states [N]) -> [N] int32 actions``, jittable.
      queries: ``N`` queries (arrays, numpy or jax).
      key: PRNG key for ``act_fn``.

    Returns:
      ``[N]`` float32 returns (1 = answered correctly).
    """
    states = jax.vmap(domain.init_from)(jnp.asarray(queries.entity),
                                        jnp.asarray(queries.relation),
                                        jnp.asarray(queries.answers))
    step = jax.vmap(domain.step)

    def body(carry, k):
        s, total = carry
        s = step(s, act_fn(k, s))
        return (s, total + s.reward), None

    keys = jax.random.split(key, domain.max_episode_steps)
    (_, total), _ = jax.lax.scan(
        body, (states, jnp.zeros(states.reward.shape, jnp.float32)), keys)
    return total


def hits_at_1(domain: KnowledgeGraphWalk, act_fn: ActFn,
              queries: Optional[Queries] = None,
              key: Optional[chex.PRNGKey] = None) -> float:
    """Hits@1 of a policy: the fraction of queries it answers correctly.

    The episode's single answer is the entity where the policy STOPs, so
    hits@1 equals the mean return.

    Args:
      domain: the domain.
      act_fn: ``(key, states [N]) -> [N] int32 actions``, jittable (e.g.
        ``lambda k, s: planner.search(params, k, s).action``).
      queries: ``N`` queries; default the domain's split queries.
      key: PRNG key for the policy; default ``PRNGKey(0)``.

    Returns:
      Hits@1 in ``[0, 1]`` (a Python float).
    """
    queries = domain.queries if queries is None else queries
    key = jax.random.PRNGKey(0) if key is None else key
    total = _compiled_rollout(domain, act_fn)(Queries(*map(jnp.asarray, queries)), key)
    return float(jnp.mean(total > 0))


@functools.lru_cache(maxsize=32)
def _compiled_rollout(domain: KnowledgeGraphWalk, act_fn: ActFn):
    """One jitted rollout per (domain, act_fn): repeated calls with the same
    policy object (e.g. periodic evaluation) do not recompile."""
    return jax.jit(lambda q, k: rollout_rewards(domain, act_fn, q, k))


def random_walk_hits_at_1(graph: KnowledgeGraph, queries: Queries,
                          key: chex.PRNGKey,
                          num_hops: Optional[int] = None) -> float:
    """Hits@1 of a random walk that stops after a fixed number of hops.

    Each query walks ``num_hops`` uniformly random out-edges (default: the
    length of the query relation's shortest pattern, so the walk knows *when*
    to stop but not *where* to go) and answers the entity it ends on.
    Vectorised over queries, ``lax.scan`` over hops.

    Args:
      graph: the graph.
      queries: ``N`` queries.
      key: PRNG key.
      num_hops: hops per walk, or ``None`` for the per-relation pattern length.

    Returns:
      Hits@1 in ``[0, 1]``.
    """
    out_tail = jnp.asarray(graph.out_tail)
    out_mask = jnp.asarray(graph.out_mask)
    if num_hops is None:
        shortest = np.array([min(len(p) for p in pats)
                             for pats in graph.query_patterns], np.int32)
        hops = jnp.asarray(shortest)[jnp.asarray(queries.relation)]
    else:
        hops = jnp.full(np.shape(queries.relation), num_hops, jnp.int32)
    horizon = int(jnp.max(hops)) if hops.size else 0

    @jax.jit
    def run(entity, answers, hops, key):
        def body(e, xs):
            i, k = xs
            slot = _random_legal(k, out_mask[e])
            moved = out_tail[e, slot]
            return jnp.where(i < hops, moved, e), None
        keys = jax.random.split(key, horizon)
        e, _ = jax.lax.scan(body, entity, (jnp.arange(horizon), keys))
        hit = jnp.take_along_axis(answers, e[:, None], axis=1)[:, 0]
        return jnp.mean(hit & (e != entity))

    return float(run(jnp.asarray(queries.entity), jnp.asarray(queries.answers),
                     hops, key))


__all__ = [
    "BASE_RELATIONS", "QUERY_RELATIONS", "Queries", "KnowledgeGraph",
    "KGWalkState", "KnowledgeGraphWalk", "make_family_graph",
    "family_graph_from_people", "entity_features", "follow_path",
    "bfs_answer_oracle", "oracle_hits_at_1", "random_act",
    "pattern_oracle_act", "rollout_rewards", "hits_at_1",
    "random_walk_hits_at_1",
]
