// Task generators: every answer is recomputed here by an independent method (a shunting-yard
// evaluator, a recursive-descent parser, direct counting), plus determinism and length bounds.
#include "train/tasks.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"

namespace mamba::train {
namespace {

struct Row {
  std::vector<int64_t> ids, targets;
};

std::vector<Row> rows(const Batch& b) {
  const int64_t n = b.ids.size(0), len = b.ids.size(1);
  std::vector<Row> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < len; ++t) {
      out[i].ids.push_back(b.ids.data<int64_t>()[i * len + t]);
      out[i].targets.push_back(b.targets.data<int64_t>()[i * len + t]);
      EXPECT_EQ(b.mask.data<uint8_t>()[i * len + t], out[i].targets.back() >= 0 ? 1 : 0);
    }
  return out;
}

// The positions that hold answers.
std::vector<int64_t> answer_positions(const Row& r) {
  std::vector<int64_t> out;
  for (size_t t = 0; t < r.targets.size(); ++t)
    if (r.targets[t] >= 0) out.push_back(static_cast<int64_t>(t));
  return out;
}

int64_t mod5(int64_t a) {
  return ((a % 5) + 5) % 5;
}

Batch sample(const std::string& task, int64_t batch, int64_t lo, int64_t hi, uint64_t seed,
             TaskOptions o = {}) {
  const auto t = make_task(task, o);
  Rng rng(seed);
  return sample_batch(*t, batch, lo, hi, rng);
}

TEST(Tasks, ParityAnswersAndLengths) {
  const Batch b = sample("parity", 64, 3, 40, 7);
  EXPECT_LE(b.ids.size(1), 40);
  for (const Row& r : rows(b)) {
    const auto pos = answer_positions(r);
    ASSERT_EQ(pos.size(), 1u);
    const int64_t last_bit = pos[0], n = last_bit + 2;  // n − 1 bits then the answer
    EXPECT_GE(n, 3);
    EXPECT_LE(n, 40);
    int64_t twos = 0;
    for (int64_t t = 0; t <= last_bit; ++t) {
      ASSERT_TRUE(r.ids[t] == 1 || r.ids[t] == 2);
      twos += r.ids[t] == 2;
    }
    EXPECT_EQ(r.targets[last_bit], twos % 2 == 0 ? 1 : 2);
    EXPECT_EQ(r.ids[n - 1], r.targets[last_bit]);
    for (size_t t = static_cast<size_t>(n); t < r.ids.size(); ++t) EXPECT_EQ(r.ids[t], 0);  // pad
  }
}

// Shunting-yard over tokens mod 5 (a different algorithm from the generator's running term).
int64_t shunting_yard(const std::vector<int64_t>& tokens) {
  std::vector<int64_t> values, ops;
  auto prec = [](int64_t op) { return op == 3 ? 2 : 1; };
  auto apply = [&] {
    const int64_t b = values.back();
    values.pop_back();
    const int64_t a = values.back();
    values.pop_back();
    const int64_t op = ops.back();
    ops.pop_back();
    values.push_back(mod5(op == 1 ? a + b : op == 2 ? a - b : a * b));
  };
  for (int64_t tok : tokens) {
    if (tok >= 5) {
      values.push_back(tok - 5);
      continue;
    }
    while (!ops.empty() && prec(ops.back()) >= prec(tok)) apply();
    ops.push_back(tok);
  }
  while (!ops.empty()) apply();
  return values.at(0);
}

TEST(Tasks, ArithmeticWithoutBracketsFollowsPrecedence) {
  const Batch b = sample("arithmetic", 64, 3, 41, 11);
  std::set<int64_t> answers;
  for (const Row& r : rows(b)) {
    const auto pos = answer_positions(r);
    ASSERT_EQ(pos.size(), 1u);
    const int64_t eq = pos[0], n = eq + 2;
    EXPECT_EQ(n % 2, 1);
    EXPECT_LE(n, 41);
    ASSERT_EQ(r.ids[eq], 4);  // '='
    const std::vector<int64_t> expr(r.ids.begin(), r.ids.begin() + eq);
    for (size_t i = 0; i < expr.size(); ++i)
      ASSERT_EQ(i % 2 == 0, expr[i] >= 5) << "digits and operators alternate";
    EXPECT_EQ(r.targets[eq], 5 + shunting_yard(expr));
    EXPECT_EQ(r.ids[n - 1], r.targets[eq]);
    answers.insert(r.targets[eq]);
  }
  EXPECT_GE(answers.size(), 4u);
  EXPECT_EQ(shunting_yard({5 + 2, 1, 5 + 3, 3, 5 + 4}), mod5(2 + 3 * 4));  // precedence check of the checker
}

// Recursive descent: expr := unary (('+'|'−') unary)*; unary := '−' unary | '(' expr ')' | digit.
struct Parser {
  const std::vector<int64_t>& t;
  size_t i = 0;
  int64_t expr() {
    int64_t v = unary();
    while (i < t.size() && (t[i] == 5 || t[i] == 6)) {
      const bool add = t[i++] == 5;
      const int64_t w = unary();
      v = mod5(add ? v + w : v - w);
    }
    return v;
  }
  int64_t unary() {
    if (t.at(i) == 6) return ++i, mod5(-unary());
    if (t.at(i) == 8) {
      ++i;
      const int64_t v = expr();
      EXPECT_EQ(t.at(i), 9) << "unbalanced bracket";
      ++i;
      return v;
    }
    EXPECT_LE(t.at(i), 4);
    return t.at(i++);
  }
};

TEST(Tasks, ArithmeticWithBracketsParsesToTheAnswer) {
  const Batch b = sample("arithmetic_brackets", 64, 3, 60, 13);
  for (const Row& r : rows(b)) {
    const auto pos = answer_positions(r);
    ASSERT_EQ(pos.size(), 1u);
    const int64_t eq = pos[0];
    ASSERT_EQ(r.ids[eq], 10);
    const std::vector<int64_t> expr(r.ids.begin(), r.ids.begin() + eq);
    Parser p{expr};
    const int64_t v = p.expr();
    EXPECT_EQ(p.i, expr.size()) << "the whole expression parses";
    EXPECT_EQ(r.targets[eq], v);
    EXPECT_EQ(r.ids[eq + 1], v);
    for (size_t t = static_cast<size_t>(eq + 2); t < r.ids.size(); ++t) EXPECT_EQ(r.ids[t], 11);  // pad
  }
  // Every exact length is possible, the shortest forms included.
  const auto task = make_task("arithmetic_brackets");
  for (int64_t n = 3; n <= 12; ++n) {
    Rng rng(n);
    EXPECT_EQ(static_cast<int64_t>(task->make(n, rng).ids.size()), n);
  }
}

TEST(Tasks, SelectiveCopyAnswersAreTheDataInOrder) {
  TaskOptions o;
  o.n_data = 4;
  const Batch b = sample("selective_copy", 8, 40, 40, 3, o);
  for (const Row& r : rows(b)) {
    std::vector<int64_t> data;
    for (int64_t t = 0; t < 36; ++t)
      if (r.ids[t] != 0) data.push_back(r.ids[t]);
    ASSERT_EQ(data.size(), 4u);
    EXPECT_EQ(answer_positions(r), (std::vector<int64_t>{36, 37, 38, 39}));
    for (int64_t i = 0; i < 4; ++i) {
      EXPECT_EQ(r.ids[36 + i], 15);
      EXPECT_EQ(r.targets[36 + i], data[i]);
      EXPECT_TRUE(data[i] >= 1 && data[i] <= 14);
    }
  }
}

TEST(Tasks, InductionHeadsAnswersTheTokenAfterTheTrigger) {
  const Batch b = sample("induction_heads", 16, 32, 32, 5);
  for (const Row& r : rows(b)) {
    EXPECT_EQ(answer_positions(r), std::vector<int64_t>{31});
    EXPECT_EQ(r.ids[31], 15);
    int64_t p = -1, triggers = 0;
    for (int64_t t = 0; t < 31; ++t)
      if (r.ids[t] == 15) p = t, ++triggers;
    ASSERT_EQ(triggers, 1);
    EXPECT_LE(p, 29);
    EXPECT_EQ(r.targets[31], r.ids[p + 1]);
  }
}

TEST(Tasks, MqarQueriesAnswerTheirValues) {
  TaskOptions o;
  o.vocab = 64;
  o.n_pairs = 4;
  const Batch b = sample("mqar", 8, 64, 64, 9, o);
  for (const Row& r : rows(b)) {
    std::set<int64_t> keys;
    for (int64_t i = 0; i < 4; ++i) {
      EXPECT_TRUE(r.ids[2 * i] >= 1 && r.ids[2 * i] < 32);
      EXPECT_TRUE(r.ids[2 * i + 1] >= 32 && r.ids[2 * i + 1] < 64);
      keys.insert(r.ids[2 * i]);
    }
    EXPECT_EQ(keys.size(), 4u);
    const auto pos = answer_positions(r);
    ASSERT_EQ(pos.size(), 4u);
    std::set<int64_t> queried;
    for (int64_t t : pos) {
      EXPECT_GE(t, 8);
      EXPECT_EQ((t - 8) % 2, 0);
      int64_t value = -1;
      for (int64_t i = 0; i < 4; ++i)
        if (r.ids[2 * i] == r.ids[t]) value = r.ids[2 * i + 1];
      EXPECT_EQ(r.targets[t], value);
      queried.insert(r.ids[t]);
    }
    EXPECT_EQ(queried, keys);
  }
}

TEST(Tasks, GroupAnswersTheRunningSum) {
  const Batch b = sample("group", 4, 20, 20, 1);
  for (const Row& r : rows(b)) {
    int64_t acc = 0;
    for (int64_t t = 0; t < 20; ++t) {
      acc = (acc + r.ids[t]) % 60;
      EXPECT_EQ(r.targets[t], acc);
    }
  }
}

TEST(Tasks, TextWindowsPredictTheNextByte) {
  const std::string path = ::testing::TempDir() + "/mamba_train_text.txt";
  const std::string text = "the quick brown fox jumps over the lazy dog";
  write_file_atomic(path, text);
  TaskOptions o;
  o.text_files = {path};
  const Batch b = sample("text", 4, 10, 10, 2, o);
  for (const Row& r : rows(b)) {
    std::string window;
    for (int64_t id : r.ids) window += static_cast<char>(id);
    const size_t at = text.find(window);
    ASSERT_NE(at, std::string::npos);
    for (size_t t = 0; t < 10; ++t) EXPECT_EQ(r.targets[t], static_cast<uint8_t>(text[at + t + 1]));
  }
  std::remove(path.c_str());
}

TEST(Tasks, DeterministicPerSeed) {
  for (const char* name : {"parity", "arithmetic", "arithmetic_brackets", "induction_heads", "group"}) {
    const Batch a = sample(name, 8, 3, 30, 42), b = sample(name, 8, 3, 30, 42),
                c = sample(name, 8, 3, 30, 43);
    EXPECT_EQ(a.ids.to_vector(), b.ids.to_vector()) << name;
    EXPECT_EQ(a.targets.to_vector(), b.targets.to_vector()) << name;
    EXPECT_NE(a.ids.to_vector(), c.ids.to_vector()) << name;
  }
}

TEST(Tasks, LengthsCoverTheRange) {
  const auto task = make_task("parity");
  std::set<int64_t> seen;
  for (uint64_t s = 0; s < 20; ++s) {
    Rng rng(s);
    const Batch b = sample_batch(*task, 32, 3, 8, rng);
    for (const Row& r : rows(b)) seen.insert(answer_positions(r)[0] + 2);
  }
  EXPECT_EQ(seen, (std::set<int64_t>{3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(nearest_valid_length(*make_task("arithmetic"), 256), 255);
  Rng rng(0);
  EXPECT_THROW(sample_batch(*make_task("arithmetic"), 1, 4, 4, rng), Error);
}

TEST(Tasks, CurriculumRaisesTheMaximumInStages) {
  Curriculum c;
  c.min_length = 3;
  c.start_max = 40;
  c.end_max = 160;
  c.n_stages = 4;
  c.steps_per_stage = 100;
  EXPECT_EQ(c.max_length(0), 40);
  EXPECT_EQ(c.max_length(99), 40);
  EXPECT_EQ(c.max_length(100), 80);
  EXPECT_EQ(c.max_length(250), 120);
  EXPECT_EQ(c.max_length(300), 160);
  EXPECT_EQ(c.max_length(100000), 160);
  c.start_max = 2;
  EXPECT_THROW(c.validate(), Error);
}

TEST(Tasks, UnknownTaskAndBadOptionsAreErrors) {
  EXPECT_THROW(make_task("parityy"), Error);
  TaskOptions o;
  o.vocab = 8;
  o.n_pairs = 8;
  EXPECT_THROW(make_task("mqar", o), Error);
  EXPECT_THROW(make_task("text"), Error);
  EXPECT_DOUBLE_EQ(make_task("parity")->chance(), 0.5);
  EXPECT_DOUBLE_EQ(make_task("arithmetic_brackets")->chance(), 0.2);
}

}  // namespace
}  // namespace mamba::train
