// The memory floor of a search's paths (built and run by path_floor.py).
//
// Input: a raw little-endian int32 file of a real search tree's parents,
// [B, N] (node 0 the root, -1 its parent; node s + 1 is the node that
// simulation s expanded).  For every simulation step s and every example,
// the program does what any search with mctx's semantics must do to memory
// between two network calls, and nothing else:
//   * the backup of step s: walk from the new node s + 1 up to the root,
//     each level a dependent load of the node's parent and a
//     read-modify-write of its visit count and value;
//   * the descent of step s + 1: walk the path of node s + 2 (the nodes
//     read are the same whether the walk goes down or up, so it goes up,
//     again through dependent loads), reading each node's statistics.
// There is no selection arithmetic and no backed-up value: the time is the
// memory walk alone.  Layouts (one record per node, per example):
//   one_line:     the node's parent, statistics and selection row in one
//                 64-byte record (the leanest a per-node store can be);
//   three_arrays: the native store's hot arrays, each in its own array:
//                 links (16 bytes), statistics (12 bytes) and the selection
//                 row (64 bytes); the backup also marks the parent's row, as
//                 the native backup keeps a node's row in step.
// Each thread owns a contiguous range of examples and walks `group` of them
// in turns (one level each per turn), as the native kernel's lanes do, so
// that the loads of different paths overlap.  The threads are started once
// and meet at a barrier after every step, like one kernel call per step.
//
//   path_floor PARENTS B N THREADS GROUP REPS
// prints one line per layout and repetition: "<layout> <ms> <levels>".

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

constexpr int kMaxGroup = 64;

struct Tree {
  int32_t batch, nodes;
  std::vector<int32_t> parents;  // [batch, nodes]
  int32_t Parent(int32_t b, int32_t n) const {
    return parents[static_cast<size_t>(b) * nodes + n];
  }
};

// Sense-reversing spin barrier for the step boundary.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n), left_(n), sense_(false) {}
  void Wait() {
    const bool sense = !sense_.load(std::memory_order_relaxed);
    if (left_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      left_.store(n_, std::memory_order_relaxed);
      sense_.store(sense, std::memory_order_release);
    } else {
      while (sense_.load(std::memory_order_acquire) != sense) {
      }
    }
  }

 private:
  const int n_;
  std::atomic<int> left_;
  std::atomic<bool> sense_;
};

// One 64-byte record: parent, visits, value, then the row's words.
struct alignas(64) Line {
  int32_t parent, visits, value, row[13];
};

struct OneLine {
  std::vector<Line> rec;
  int32_t nodes;
  explicit OneLine(const Tree& t) : rec(t.parents.size()), nodes(t.nodes) {
    for (size_t k = 0; k < rec.size(); ++k) rec[k] = Line{t.parents[k], 0, 0, {}};
  }
  // Backup touch of node n of example b; returns its parent.
  int32_t Up(int32_t b, int32_t n, int32_t leaf) {
    Line& r = rec[static_cast<size_t>(b) * nodes + n];
    r.visits += 1;
    r.value += leaf;
    return r.parent;
  }
  // Descent touch; returns the parent (the walk's next node) and adds what
  // it read to `sink`.
  int32_t Read(int32_t b, int32_t n, int64_t* sink) const {
    const Line& r = rec[static_cast<size_t>(b) * nodes + n];
    *sink += r.visits + r.row[12];
    return r.parent;
  }
};

struct ThreeArrays {
  std::vector<int32_t> links, stats;  // [B*N, 4], [B*N, 3]
  std::vector<Line> rows;             // [B*N], one line each
  int32_t nodes;
  explicit ThreeArrays(const Tree& t)
      : links(4 * t.parents.size()), stats(3 * t.parents.size()),
        rows(t.parents.size()), nodes(t.nodes) {
    for (size_t k = 0; k < t.parents.size(); ++k) links[4 * k] = t.parents[k];
  }
  int32_t Up(int32_t b, int32_t n, int32_t leaf) {
    const size_t k = static_cast<size_t>(b) * nodes + n;
    stats[3 * k] += 1;
    stats[3 * k + 1] += leaf;
    const int32_t p = links[4 * k];
    if (p >= 0) rows[static_cast<size_t>(b) * nodes + p].row[0] += 1;
    return p;
  }
  int32_t Read(int32_t b, int32_t n, int64_t* sink) const {
    const size_t k = static_cast<size_t>(b) * nodes + n;
    *sink += stats[3 * k] + rows[k].row[12];
    return links[4 * k];
  }
};

// One step for examples [b0, b1): the backup of node `step + 1`, then the
// walk of node `step + 2`'s path, `group` examples in turns.
template <typename Store>
int64_t Step(Store& store, const Tree& t, int32_t step, int32_t b0,
             int32_t b1, int32_t group, int64_t* sink) {
  int64_t levels = 0;
  int32_t cur[kMaxGroup];
  for (int32_t g0 = b0; g0 < b1; g0 += group) {
    const int32_t n = std::min(b1, g0 + group) - g0;
    for (int32_t i = 0; i < n; ++i) cur[i] = step + 1;
    for (bool live = true; live;) {
      live = false;
      for (int32_t i = 0; i < n; ++i) {
        if (cur[i] < 0) continue;
        cur[i] = store.Up(g0 + i, cur[i], step);
        ++levels;
        live = true;
      }
    }
    if (step + 2 >= t.nodes) continue;
    for (int32_t i = 0; i < n; ++i) cur[i] = t.Parent(g0 + i, step + 2);
    for (bool live = true; live;) {
      live = false;
      for (int32_t i = 0; i < n; ++i) {
        if (cur[i] < 0) continue;
        cur[i] = store.Read(g0 + i, cur[i], sink);
        live = true;
      }
    }
  }
  return levels;
}

// Milliseconds for one whole search (every step) and the backup's levels.
template <typename Store>
double Search(const Tree& t, int32_t threads, int32_t group, int64_t* levels) {
  Store store(t);
  Barrier barrier(threads);
  std::vector<int64_t> sinks(threads * 16, 0), counts(threads, 0);
  auto body = [&](int32_t id) {
    const int32_t b0 = t.batch * id / threads;
    const int32_t b1 = t.batch * (id + 1) / threads;
    for (int32_t s = 0; s + 1 < t.nodes; ++s) {
      counts[id] += Step(store, t, s, b0, b1, group, &sinks[16 * id]);
      barrier.Wait();
    }
  };
  std::vector<std::thread> pool;
  const auto t0 = std::chrono::steady_clock::now();
  for (int32_t id = 1; id < threads; ++id) pool.emplace_back(body, id);
  body(0);
  for (auto& th : pool) th.join();
  const auto t1 = std::chrono::steady_clock::now();
  *levels = 0;
  for (int64_t c : counts) *levels += c;
  int64_t total = 0;
  for (int64_t s : sinks) total += s;
  if (total == 42) std::printf("#\n");  // keeps the reads
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: %s PARENTS B N THREADS GROUP REPS\n", argv[0]);
    return 2;
  }
  Tree t;
  t.batch = std::atoi(argv[2]);
  t.nodes = std::atoi(argv[3]);
  const int32_t threads = std::max(1, std::atoi(argv[4]));
  const int32_t group = std::clamp(std::atoi(argv[5]), 1, kMaxGroup);
  const int32_t reps = std::max(1, std::atoi(argv[6]));
  t.parents.resize(static_cast<size_t>(t.batch) * t.nodes);
  FILE* f = std::fopen(argv[1], "rb");
  if (!f || std::fread(t.parents.data(), 4, t.parents.size(), f) !=
                t.parents.size()) {
    std::fprintf(stderr, "cannot read %zu parents from %s\n",
                 t.parents.size(), argv[1]);
    return 1;
  }
  std::fclose(f);
  for (int32_t r = 0; r < reps; ++r) {
    int64_t levels = 0;
    double ms = Search<OneLine>(t, threads, group, &levels);
    std::printf("one_line %.3f %lld\n", ms, static_cast<long long>(levels));
    ms = Search<ThreeArrays>(t, threads, group, &levels);
    std::printf("three_arrays %.3f %lld\n", ms, static_cast<long long>(levels));
    std::fflush(stdout);
  }
  return 0;
}
