// Sampler: penalties → greedy | top-k → temperature → softmax → top-p → min-p → draw (the order
// and the semantics are documented in sampler.h). Per-token path: no allocation in sample().
#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace mamba::sampling {
namespace {

// Slack for the top-p and min-p boundaries: probabilities come from float exp and sums, so a
// boundary that is exact on paper (0.5 + 0.3 >= 0.8) can miss by a few ulps.
constexpr double kBoundarySlack = 1e-6;

// Most likely first; equal logits → lower id first, so every filter is deterministic.
bool more_likely(float logit_a, int32_t id_a, float logit_b, int32_t id_b) {
  return logit_a > logit_b || (logit_a == logit_b && id_a < id_b);
}

}  // namespace

void validate(const SamplingParams& params) {
  if (!std::isfinite(params.temperature))
    throw_error(ErrorCode::invalid_argument, "sampling: temperature must be finite, got ",
                params.temperature);
  if (!(params.top_p >= 0.0f && params.top_p <= 1.0f))
    throw_error(ErrorCode::invalid_argument, "sampling: top_p must be in [0, 1], got ", params.top_p);
  if (!(params.min_p >= 0.0f && params.min_p <= 1.0f))
    throw_error(ErrorCode::invalid_argument, "sampling: min_p must be in [0, 1], got ", params.min_p);
  if (!(params.repetition_penalty > 0.0f) || !std::isfinite(params.repetition_penalty))
    throw_error(ErrorCode::invalid_argument, "sampling: repetition_penalty must be > 0, got ",
                params.repetition_penalty);
  if (!std::isfinite(params.presence_penalty))
    throw_error(ErrorCode::invalid_argument, "sampling: presence_penalty must be finite, got ",
                params.presence_penalty);
  if (!std::isfinite(params.frequency_penalty))
    throw_error(ErrorCode::invalid_argument, "sampling: frequency_penalty must be finite, got ",
                params.frequency_penalty);
  if (params.penalty_last_n < -1)
    throw_error(ErrorCode::invalid_argument,
                "sampling: penalty_last_n must be >= -1 (-1 = whole history), got ", params.penalty_last_n);
}

Sampler::Sampler(const SamplingParams& params, int32_t vocab_size)
    : params_(params), vocab_size_(vocab_size), rng_(params.seed) {
  validate(params);
  if (vocab_size <= 0)
    throw_error(ErrorCode::invalid_argument, "sampling: vocab_size must be > 0, got ", vocab_size);
  candidates_.reserve(static_cast<size_t>(vocab_size));
}

void Sampler::reset(uint64_t seed) {
  params_.seed = seed;
  rng_.seed(seed);
}

double Sampler::uniform01() {
  // Our own mapping rather than std::uniform_real_distribution, whose algorithm is left to
  // the standard library: mt19937_64's output is fixed by the standard, so this is portable.
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

void Sampler::apply_penalties(std::span<const int32_t> history, std::vector<Candidate>& candidates) const {
  const SamplingParams& p = params_;
  if (p.penalty_last_n == 0 || history.empty()) return;
  if (p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f) return;
  size_t n_window = history.size();
  if (p.penalty_last_n > 0) n_window = std::min(n_window, static_cast<size_t>(p.penalty_last_n));

  // Sorting a copy of the window groups each distinct token with its count.
  std::vector<int32_t> window(history.end() - static_cast<std::ptrdiff_t>(n_window), history.end());
  std::sort(window.begin(), window.end());
  for (size_t i = 0; i < window.size();) {
    size_t j = i;
    while (j < window.size() && window[j] == window[i]) ++j;
    const int32_t id = window[i];
    const size_t count = j - i;
    i = j;
    if (id < 0 || id >= vocab_size_) continue;
    // Candidates are still in id order here (filter() builds them so).
    float& logit = candidates[static_cast<size_t>(id)].logit;
    logit = logit < 0.0f ? logit * p.repetition_penalty : logit / p.repetition_penalty;
    logit -= p.presence_penalty + static_cast<float>(count) * p.frequency_penalty;
  }
}

int32_t Sampler::filter(const float* logits, std::span<const int32_t> history,
                        std::vector<Candidate>& candidates) const {
  MAMBA_CHECK(logits != nullptr, "sampler: null logits");
  const size_t n_vocab = static_cast<size_t>(vocab_size_);
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();

  // 1. Candidates in id order over the first vocab_size columns only (padding excluded).
  candidates.resize(n_vocab);
  for (size_t i = 0; i < n_vocab; ++i) {
    const float x = logits[i];
    candidates[i] = {static_cast<int32_t>(i), std::isnan(x) ? kNegInf : x, 0.0f};
  }
  apply_penalties(history, candidates);

  // 2. Greedy. Strict '>' keeps the lowest id among equal maxima.
  size_t best = 0;
  for (size_t i = 1; i < n_vocab; ++i)
    if (candidates[i].logit > candidates[best].logit) best = i;
  const float max_logit = candidates[best].logit;
  if (params_.temperature <= 0.0f || params_.top_k == 1 || !std::isfinite(max_logit))
    return candidates[best].id;

  auto higher = [](const Candidate& a, const Candidate& b) {
    return more_likely(a.logit, a.id, b.logit, b.id);
  };

  // 3. Top-k: nth_element puts the k most likely (in any order) in front.
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n_vocab) {
    const auto k = static_cast<std::ptrdiff_t>(params_.top_k);
    std::nth_element(candidates.begin(), candidates.begin() + k - 1, candidates.end(), higher);
    candidates.resize(static_cast<size_t>(k));
  }

  // 4-5. Temperature and softmax. max_logit survives top-k, so it is the stabilizing shift.
  const float inv_temperature = 1.0f / params_.temperature;
  double sum = 0.0;
  for (Candidate& c : candidates) {
    c.p = std::exp((c.logit - max_logit) * inv_temperature);
    sum += c.p;
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
  for (Candidate& c : candidates) c.p *= inv_sum;
  // Zero-probability tokens (−inf logits, underflow) can never be drawn; dropping them keeps
  // the draw below from landing on one through rounding.
  std::erase_if(candidates, [](const Candidate& c) { return c.p <= 0.0f; });

  // 6. Top-p. Sorting the whole vocabulary is rarely needed: sort a growing prefix (256, ×4)
  // until it holds the mass. partial_sort on [sorted, end) extends the sorted prefix because
  // everything in front of it is already more likely than anything behind.
  bool is_sorted = false;
  if (params_.top_p < 1.0f) {
    const size_t n = candidates.size();
    const double target = static_cast<double>(params_.top_p) - kBoundarySlack;
    size_t n_sorted = 0;
    size_t n_keep = n;
    double cumulative = 0.0;
    for (size_t block_end = std::min<size_t>(n, 256); n_keep == n && n_sorted < n;
         block_end = std::min(n, block_end * 4)) {
      std::partial_sort(candidates.begin() + static_cast<std::ptrdiff_t>(n_sorted),
                        candidates.begin() + static_cast<std::ptrdiff_t>(block_end), candidates.end(),
                        higher);
      for (size_t i = n_sorted; i < block_end; ++i) {
        cumulative += candidates[i].p;
        if (cumulative >= target) {
          n_keep = i + 1;  // i = 0 always passes when top_p = 0: the top token is kept
          break;
        }
      }
      n_sorted = block_end;
    }
    candidates.resize(n_keep);
    is_sorted = true;
  }

  // 7. Min-p against the most likely survivor (the first one when sorted). Renormalizing after
  // top-p would not change the ratio p / p_max, so it is tested on the same probabilities.
  if (params_.min_p > 0.0f) {
    float p_max = 0.0f;
    if (is_sorted) {
      p_max = candidates.front().p;
    } else {
      for (const Candidate& c : candidates) p_max = std::max(p_max, c.p);
    }
    const float threshold = static_cast<float>((params_.min_p - kBoundarySlack) * p_max);
    std::erase_if(candidates, [threshold](const Candidate& c) { return c.p < threshold; });
  }
  MAMBA_CHECK(!candidates.empty(), "sampler: every candidate was filtered out");
  return -1;
}

int32_t Sampler::sample(const float* logits, std::span<const int32_t> history) {
  const int32_t greedy = filter(logits, history, candidates_);
  if (greedy >= 0) return greedy;

  // 8. Renormalize implicitly: draw u in [0, total) and walk the cumulative sum.
  double total = 0.0;
  for (const Candidate& c : candidates_) total += c.p;
  const double u = uniform01() * total;
  double cumulative = 0.0;
  for (const Candidate& c : candidates_) {
    cumulative += c.p;
    if (u < cumulative) return c.id;
  }
  return candidates_.back().id;  // u within rounding of total
}

std::vector<float> Sampler::probabilities(const float* logits, std::span<const int32_t> history) const {
  std::vector<Candidate> candidates;
  std::vector<float> probs(static_cast<size_t>(vocab_size_), 0.0f);
  const int32_t greedy = filter(logits, history, candidates);
  if (greedy >= 0) {
    probs[static_cast<size_t>(greedy)] = 1.0f;
    return probs;
  }
  double total = 0.0;
  for (const Candidate& c : candidates) total += c.p;
  for (const Candidate& c : candidates) probs[static_cast<size_t>(c.id)] = static_cast<float>(c.p / total);
  return probs;
}

}  // namespace mamba::sampling
