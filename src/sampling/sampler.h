// Token sampler: turns one row of logits into a token id with llama.cpp-like filters, applied in
// one fixed order (below). min_p is relative to the most likely token — the intended semantics,
// not the reference's (SPEC.md §5, §8 item 17). Same seed + same inputs → same tokens, anywhere.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace mamba::sampling {

// What to sample and how. Defaults sample from the model's distribution unchanged (temperature
// 1, every filter and penalty off).
struct SamplingParams {
  // Divides the logits after top-k. <= 0 means greedy (argmax, every other filter skipped).
  float temperature = 1.0f;
  // Keep only the k highest logits. <= 0: off; 1: greedy, like temperature <= 0.
  int top_k = 0;
  // Nucleus: keep the smallest set of most likely tokens whose probability sums to >= top_p.
  // In [0, 1]; 1: off; the most likely token always survives (so 0 is greedy in effect).
  float top_p = 1.0f;
  // Keep tokens with p >= min_p · p_max (p_max: probability of the most likely token).
  // In [0, 1]; 0: off.
  float min_p = 0.0f;
  // For each distinct token of the penalty window: logit < 0 → × penalty, else ÷ penalty.
  // > 0; 1: off; > 1 discourages repeats.
  float repetition_penalty = 1.0f;
  // Subtracted once from the logit of each distinct token of the penalty window. 0: off.
  float presence_penalty = 0.0f;
  // Subtracted from a token's logit once per occurrence in the penalty window. 0: off.
  float frequency_penalty = 0.0f;
  // The penalty window: the last penalty_last_n tokens of the history. -1: the whole history;
  // 0: no penalties.
  int penalty_last_n = 64;
  // Seeds the sampler's own RNG (std::mt19937_64, fully specified by the standard, and a
  // uniform draw of our own), so a seed reproduces the same tokens on any machine.
  uint64_t seed = 0;
};

// Throws mamba::Error (invalid_argument) naming the first field out of range.
void validate(const SamplingParams& params);

// One sequence's sampler: the parameters, the vocabulary size and the RNG. Not thread-safe;
// use one per sequence.
//
// Order of operations in sample() (and probabilities()):
//   1. penalties on the first vocab_size logits, from the window of `history`:
//      repetition (×/÷), then −presence once and −frequency × count per distinct token;
//   2. if temperature <= 0 or top_k == 1: argmax (ties → lowest id), done;
//   3. top-k (ties in logit → lower id first);
//   4. logits / temperature;
//   5. softmax over the remaining tokens;
//   6. top-p: smallest most-likely-first set with cumulative p >= top_p (1e-6 slack, so a
//      hand-written boundary such as 0.8 is not lost to float rounding);
//   7. min-p: keep p >= min_p · p_max (same slack);
//   8. renormalize and draw.
// Usage:
//   Sampler sampler({.temperature = 0.8f, .top_p = 0.95f, .seed = 42}, config.vocab_size);
//   int32_t token = sampler.sample(logits_row, generated_so_far);
class Sampler {
public:
  // `vocab_size`: how many leading columns of a logits row are candidates. A row may be wider
  // (padded vocabulary); the columns past vocab_size are never sampled. Validates `params`.
  Sampler(const SamplingParams& params, int32_t vocab_size);

  // `logits`: at least vocab_size floats. `history`: the tokens so far (prompt + generated),
  // oldest first; ids outside [0, vocab_size) are ignored by the penalties. NaN logits count as
  // −inf; a row whose best logit is not finite is sampled greedily.
  int32_t sample(const float* logits, std::span<const int32_t> history);

  // The distribution sample() draws from, over the first vocab_size ids (zeros where filtered;
  // one-hot when greedy). Does not touch the RNG. For tests and for `--show-probs` style output.
  std::vector<float> probabilities(const float* logits, std::span<const int32_t> history) const;

  // Restarts the RNG: the same seed replays the same draws.
  void reset(uint64_t seed);

  const SamplingParams& params() const { return params_; }
  int32_t vocab_size() const { return vocab_size_; }

private:
  struct Candidate {
    int32_t id;
    float logit;
    float p;  // probability after softmax (step 5); unnormalized after the filters
  };

  // Steps 1-7: leaves the surviving candidates in `candidates` (p not renormalized) and returns
  // -1, or returns the greedy token id (step 2 or a non-finite row).
  int32_t filter(const float* logits, std::span<const int32_t> history,
                 std::vector<Candidate>& candidates) const;
  void apply_penalties(std::span<const int32_t> history, std::vector<Candidate>& candidates) const;
  double uniform01();  // [0, 1) from 53 random bits

  SamplingParams params_;
  int32_t vocab_size_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;  // scratch reused by sample(), vocab_size entries
};

}  // namespace mamba::sampling
