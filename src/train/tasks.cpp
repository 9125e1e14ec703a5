// The task generators of TASKS.md, one class per task, and batching with padding. Each
// generator builds the sequence and its answer together, so the answer never needs re-parsing.
#include "train/tasks.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "core/error.h"
#include "core/file_util.h"

namespace mamba::train {
namespace {

int64_t mod(int64_t a, int64_t m) {
  return ((a % m) + m) % m;
}

// k distinct integers from [0, n), in random order (partial Fisher-Yates).
std::vector<int64_t> distinct(int64_t k, int64_t n, Rng& rng) {
  std::vector<int64_t> pool(static_cast<size_t>(n));
  std::iota(pool.begin(), pool.end(), 0);
  for (int64_t i = 0; i < k; ++i) std::swap(pool[i], pool[rng.uniform_int(i, n - 1)]);
  pool.resize(static_cast<size_t>(k));
  return pool;
}

// Parity (TASKS.md §1): n − 1 bits from {1, 2}, then the answer 1 + (#2s mod 2); pad 0.
class Parity final : public Task {
public:
  std::string name() const override { return "parity"; }
  int64_t vocab_size() const override { return 3; }
  int64_t pad_id() const override { return 0; }
  double chance() const override { return 0.5; }
  int64_t min_length() const override { return 2; }
  Example make(int64_t n, Rng& rng) const override {
    Example e{std::vector<int64_t>(n), std::vector<int64_t>(n, -1)};
    int64_t twos = 0;
    for (int64_t t = 0; t + 1 < n; ++t) {
      e.ids[t] = rng.uniform_int(1, 2);
      twos += e.ids[t] == 2;
    }
    e.ids[n - 1] = 1 + twos % 2;
    e.targets[n - 2] = e.ids[n - 1];  // predicted from the last bit
    return e;
  }
};

// Modular arithmetic without brackets: `d op d … d = r`, r mod 5 with × before + and −.
// Ids: 0 pad, 1 '+', 2 '−', 3 '×', 4 '=', 5..9 the digits 0..4.
class Arithmetic final : public Task {
public:
  static constexpr int64_t plus = 1, minus = 2, times = 3, equals = 4, digit0 = 5;
  std::string name() const override { return "arithmetic"; }
  int64_t vocab_size() const override { return 10; }
  int64_t pad_id() const override { return 0; }
  double chance() const override { return 0.2; }
  int64_t min_length() const override { return 3; }
  bool valid_length(int64_t n) const override { return n >= 3 && n % 2 == 1; }
  Example make(int64_t n, Rng& rng) const override {
    Example e{{}, std::vector<int64_t>(n, -1)};
    const int64_t n_digits = (n - 1) / 2;
    // Running value: sum of the finished terms plus the signed product of the current term.
    int64_t sum = 0, term = 0;
    for (int64_t k = 0; k < n_digits; ++k) {
      const int64_t d = rng.uniform_int(0, 4);
      if (k == 0) {
        term = d;
      } else {
        const int64_t op = rng.uniform_int(plus, times);
        e.ids.push_back(op);
        if (op == times) {
          term = mod(term * d, 5);
        } else {
          sum = mod(sum + term, 5);
          term = op == plus ? d : mod(-d, 5);
        }
      }
      e.ids.push_back(digit0 + d);
    }
    e.ids.push_back(equals);
    e.ids.push_back(digit0 + mod(sum + term, 5));
    e.targets[n - 2] = e.ids[n - 1];
    return e;
  }
};

// Modular arithmetic with brackets: a target length >= 5 becomes `(L op R)`, op ∈ {+, −}, the
// rest split between L and R; lengths 1..4 are `t`, `-t`, `(t)`, `(-t)`. Then `= r`.
// Ids: digits 0..4, '+' 5, '−' 6, '×' 7 (unused), '(' 8, ')' 9, '=' 10, pad 11.
class ArithmeticBrackets final : public Task {
public:
  static constexpr int64_t plus = 5, minus = 6, open = 8, close = 9, equals = 10, pad = 11;
  std::string name() const override { return "arithmetic_brackets"; }
  int64_t vocab_size() const override { return 12; }
  int64_t pad_id() const override { return pad; }
  double chance() const override { return 0.2; }
  int64_t min_length() const override { return 3; }
  Example make(int64_t n, Rng& rng) const override {
    Example e{{}, std::vector<int64_t>(n, -1)};
    const int64_t r = expression(n - 2, rng, e.ids);
    e.ids.push_back(equals);
    e.ids.push_back(r);
    e.targets[n - 2] = r;
    return e;
  }

private:
  // Appends an expression of exactly `length` tokens; returns its value mod 5.
  static int64_t expression(int64_t length, Rng& rng, std::vector<int64_t>& out) {
    if (length >= 5) {
      out.push_back(open);
      const int64_t left = rng.uniform_int(1, length - 4);
      const int64_t a = expression(left, rng, out);
      const bool add = rng.uniform_int(0, 1) == 0;
      out.push_back(add ? plus : minus);
      const int64_t b = expression(length - 3 - left, rng, out);
      out.push_back(close);
      return mod(add ? a + b : a - b, 5);
    }
    const int64_t t = rng.uniform_int(0, 4);
    switch (length) {
      case 1:
        out.insert(out.end(), {t});
        return t;
      case 2:
        out.insert(out.end(), {minus, t});
        return mod(-t, 5);
      case 3:
        out.insert(out.end(), {open, t, close});
        return t;
      default:
        out.insert(out.end(), {open, minus, t, close});
        return mod(-t, 5);
    }
  }
};

// Selective copying (TASKS.md §2): n_data tokens from 1..14 at sorted random slots among
// length − n_data noise slots (0), then n_data markers (15); marker i answers data token i.
class SelectiveCopy final : public Task {
public:
  explicit SelectiveCopy(int64_t n_data) : n_data_(n_data) {
    if (n_data < 1)
      throw_error(ErrorCode::invalid_argument, "selective_copy: n_data must be positive, found ", n_data);
  }
  std::string name() const override { return "selective_copy"; }
  int64_t vocab_size() const override { return 16; }
  int64_t pad_id() const override { return 0; }
  double chance() const override { return 1.0 / 14.0; }
  int64_t min_length() const override { return 2 * n_data_; }
  int64_t default_length() const override { return 4096 + 2 * n_data_; }
  Example make(int64_t n, Rng& rng) const override {
    const int64_t slots = n - n_data_;
    Example e{std::vector<int64_t>(n, 0), std::vector<int64_t>(n, -1)};
    std::vector<int64_t> where = distinct(n_data_, slots, rng);
    std::sort(where.begin(), where.end());
    for (int64_t i = 0; i < n_data_; ++i) {
      const int64_t token = rng.uniform_int(1, 14);
      e.ids[where[i]] = token;
      e.ids[slots + i] = 15;
      e.targets[slots + i] = token;
    }
    return e;
  }

private:
  int64_t n_data_;
};

// Induction heads (TASKS.md §3): tokens from 0..14, the trigger 15 at a random p in
// [0, n − 3] and at the end; the last position answers the token at p + 1.
class InductionHeads final : public Task {
public:
  std::string name() const override { return "induction_heads"; }
  int64_t vocab_size() const override { return 16; }
  int64_t pad_id() const override { return 0; }
  double chance() const override { return 1.0 / 15.0; }
  int64_t min_length() const override { return 3; }
  Example make(int64_t n, Rng& rng) const override {
    Example e{std::vector<int64_t>(n), std::vector<int64_t>(n, -1)};
    for (int64_t t = 0; t + 1 < n; ++t) e.ids[t] = rng.uniform_int(0, 14);
    const int64_t p = rng.uniform_int(0, n - 3);
    e.ids[p] = 15;
    e.ids[n - 1] = 15;
    e.targets[n - 1] = e.ids[p + 1];
    return e;
  }
};

// MQAR (TASKS.md §4, Zoology's multiquery_ar): n_pairs distinct keys [1, V/2) with distinct
// values [V/2, V), then a query region where each key reappears once at an even offset 2·gap,
// gaps drawn without replacement with weights ∝ (gap+1)^(a−1); the key's position answers its
// value; every other query-region position holds a random token from [0, V).
class Mqar final : public Task {
public:
  Mqar(int64_t vocab, int64_t n_pairs, double power_a) : vocab_(vocab), n_pairs_(n_pairs), power_a_(power_a) {
    if (n_pairs < 1 || vocab / 2 - 1 < n_pairs)
      throw_error(ErrorCode::invalid_argument, "mqar: n_pairs must be in [1, vocab/2 − 1] = [1, ",
                  vocab / 2 - 1, "], found ", n_pairs);
    if (power_a <= 0)
      throw_error(ErrorCode::invalid_argument, "mqar: power_a must be positive, found ", power_a);
  }
  std::string name() const override { return "mqar"; }
  int64_t vocab_size() const override { return vocab_; }
  int64_t pad_id() const override { return 0; }
  double chance() const override { return 1.0 / static_cast<double>(vocab_ - vocab_ / 2); }
  int64_t min_length() const override { return 4 * n_pairs_; }
  Example make(int64_t n, Rng& rng) const override {
    const int64_t half = vocab_ / 2, context = 2 * n_pairs_, space = (n - context) / 2;
    Example e{std::vector<int64_t>(n, 0), std::vector<int64_t>(n, -1)};
    std::vector<int64_t> keys = distinct(n_pairs_, half - 1, rng),
                         values = distinct(n_pairs_, vocab_ - half, rng);
    for (int64_t i = 0; i < n_pairs_; ++i) {
      keys[i] += 1;
      values[i] += half;
      e.ids[2 * i] = keys[i];
      e.ids[2 * i + 1] = values[i];
    }
    // Weighted sampling without replacement (Efraimidis-Spirakis): the n_pairs largest log(u)/w.
    std::vector<std::pair<double, int64_t>> score(static_cast<size_t>(space));
    for (int64_t g = 0; g < space; ++g) {
      const double w = power_a_ * std::pow(static_cast<double>(g + 1), power_a_ - 1.0);
      score[g] = {std::log(1.0 - rng.uniform()) / w, g};
    }
    std::partial_sort(score.begin(), score.begin() + n_pairs_, score.end(), std::greater<>());
    for (int64_t i = 0; i < n_pairs_; ++i) {
      const int64_t pos = context + 2 * score[i].second;
      e.ids[pos] = keys[i];
      e.targets[pos] = values[i];
    }
    for (int64_t t = context; t < n; ++t)
      if (e.ids[t] == 0) e.ids[t] = rng.uniform_int(0, vocab_ - 1);
    return e;
  }

private:
  int64_t vocab_, n_pairs_;
  double power_a_;
};

// Word problem of the cyclic group Z_order (TASKS.md §5): elements 0..order−1, every position
// answers the running sum mod order; pad = order.
class GroupWord final : public Task {
public:
  explicit GroupWord(int64_t order) : order_(order) {
    if (order < 2) throw_error(ErrorCode::invalid_argument, "group: group_order must be >= 2, found ", order);
  }
  std::string name() const override { return "group"; }
  int64_t vocab_size() const override { return order_ + 1; }
  int64_t pad_id() const override { return order_; }
  double chance() const override { return 1.0 / static_cast<double>(order_); }
  int64_t min_length() const override { return 1; }
  Example make(int64_t n, Rng& rng) const override {
    Example e{std::vector<int64_t>(n), std::vector<int64_t>(n)};
    int64_t acc = 0;
    for (int64_t t = 0; t < n; ++t) {
      e.ids[t] = rng.uniform_int(0, order_ - 1);
      acc = (acc + e.ids[t]) % order_;
      e.targets[t] = acc;
    }
    return e;
  }

private:
  int64_t order_;
};

// Byte-level language modelling: random windows of the concatenated files, ids = bytes
// (ByteTokenizer), every position answers the next byte.
class ByteText final : public Task {
public:
  explicit ByteText(const std::vector<std::string>& files) {
    if (files.empty()) throw_error(ErrorCode::invalid_argument, "text: no text files given (--text FILE)");
    for (const std::string& f : files) bytes_ += read_file(f);
    if (bytes_.size() < 2)
      throw_error(ErrorCode::invalid_argument, "text: the text files hold fewer than 2 bytes");
  }
  std::string name() const override { return "text"; }
  int64_t vocab_size() const override { return 256; }
  int64_t pad_id() const override { return 0; }
  double chance() const override { return 1.0 / 256.0; }
  int64_t min_length() const override { return 1; }
  bool valid_length(int64_t n) const override { return n >= 1 && n + 1 <= size(); }
  int64_t default_length() const override { return std::min<int64_t>(256, size() - 1); }
  Example make(int64_t n, Rng& rng) const override {
    const int64_t start = rng.uniform_int(0, size() - n - 1);
    Example e{std::vector<int64_t>(n), std::vector<int64_t>(n)};
    for (int64_t t = 0; t < n; ++t) {
      e.ids[t] = static_cast<uint8_t>(bytes_[start + t]);
      e.targets[t] = static_cast<uint8_t>(bytes_[start + t + 1]);
    }
    return e;
  }

private:
  int64_t size() const { return static_cast<int64_t>(bytes_.size()); }
  std::string bytes_;
};

}  // namespace

std::vector<std::string> task_names() {
  return {"parity", "arithmetic", "arithmetic_brackets", "selective_copy", "induction_heads", "mqar",
          "group",  "text"};
}

std::unique_ptr<Task> make_task(const std::string& name, const TaskOptions& o) {
  if (name == "parity") return std::make_unique<Parity>();
  if (name == "arithmetic") return std::make_unique<Arithmetic>();
  if (name == "arithmetic_brackets") return std::make_unique<ArithmeticBrackets>();
  if (name == "selective_copy") return std::make_unique<SelectiveCopy>(o.n_data);
  if (name == "induction_heads") return std::make_unique<InductionHeads>();
  if (name == "mqar") return std::make_unique<Mqar>(o.vocab, o.n_pairs, o.power_a);
  if (name == "group") return std::make_unique<GroupWord>(o.group_order);
  if (name == "text") return std::make_unique<ByteText>(o.text_files);
  std::string known;
  for (const std::string& n : task_names()) known += (known.empty() ? "" : ", ") + n;
  throw_error(ErrorCode::invalid_argument, "unknown task '", name, "' (expected one of ", known, ")");
}

int64_t nearest_valid_length(const Task& task, int64_t length) {
  for (int64_t n = length; n >= task.min_length(); --n)
    if (task.valid_length(n)) return n;
  return -1;
}

Batch sample_batch(const Task& task, int64_t batch, int64_t min_length, int64_t max_length, Rng& rng) {
  MAMBA_CHECK(batch > 0);
  const int64_t lo = std::max(min_length, task.min_length());
  if (nearest_valid_length(task, max_length) < lo)
    throw_error(ErrorCode::invalid_argument, task.name(), ": no valid sequence length in [", lo, ", ",
                max_length, "] (the task needs at least ", task.min_length(), ")");
  std::vector<Example> examples;
  int64_t seq_len = 0;
  for (int64_t b = 0; b < batch; ++b) {
    int64_t n = rng.uniform_int(lo, max_length);
    while (!task.valid_length(n)) n = rng.uniform_int(lo, max_length);
    examples.push_back(task.make(n, rng));
    MAMBA_CHECK(static_cast<int64_t>(examples.back().ids.size()) == n, task.name() << " made a wrong length");
    seq_len = std::max(seq_len, n);
  }
  Batch out;
  out.ids = Tensor::empty({batch, seq_len}, DType::i64);
  out.targets = Tensor::empty({batch, seq_len}, DType::i64);
  out.mask = Tensor::zeros({batch, seq_len}, DType::u8);
  int64_t* ids = out.ids.data<int64_t>();
  int64_t* targets = out.targets.data<int64_t>();
  uint8_t* mask = out.mask.data<uint8_t>();
  std::fill(ids, ids + batch * seq_len, task.pad_id());
  std::fill(targets, targets + batch * seq_len, int64_t{-1});
  for (int64_t b = 0; b < batch; ++b) {
    const Example& e = examples[b];
    const int64_t n = static_cast<int64_t>(e.ids.size());
    for (int64_t t = 0; t < n; ++t) {
      ids[b * seq_len + t] = e.ids[t];
      targets[b * seq_len + t] = e.targets[t];
      mask[b * seq_len + t] = e.targets[t] >= 0;
      out.n_answers += e.targets[t] >= 0;
    }
    out.n_tokens += n;
    out.lengths.push_back(n);
  }
  return out;
}

int64_t Curriculum::max_length(int64_t step) const {
  if (n_stages <= 1) return end_max;
  const int64_t stage = std::min(step / steps_per_stage, n_stages - 1);
  return start_max + (end_max - start_max) * stage / (n_stages - 1);
}

void Curriculum::validate() const {
  auto bad = [](const char* field, const char* expected, int64_t found) {
    throw_error(ErrorCode::invalid_argument, "curriculum: field '", field, "' expected ", expected,
                ", found ", found);
  };
  if (min_length < 1) bad("min_length", ">= 1", min_length);
  if (n_stages < 1) bad("n_stages", ">= 1", n_stages);
  if (steps_per_stage < 1) bad("steps_per_stage", ">= 1", steps_per_stage);
  if (end_max < min_length) bad("end_max", ">= min_length", end_max);
  if (n_stages > 1 && (start_max < min_length || start_max > end_max))
    bad("start_max", "in [min_length, end_max]", start_max);
}

}  // namespace mamba::train
