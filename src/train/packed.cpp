// PackedTrainer (packed.h): the runs of a sweep stepped together.
#include "train/packed.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/file_util.h"
#include "train/checkpoint.h"
#include "train/train_config.h"

namespace mamba::train {

using nlohmann::json;

std::vector<RunSpec> sweep_grid(const std::vector<uint64_t>& seeds, const std::vector<double>& lrs) {
  std::vector<RunSpec> out;
  for (uint64_t s : seeds)
    for (double lr : lrs) out.push_back({s, lr});
  return out;
}

namespace {

uint64_t seed_of(const json& v, const std::string& where) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0)
    throw_error(ErrorCode::invalid_argument, where, ": expected a non-negative integer seed, found ",
                v.dump());
  return v.get<uint64_t>();
}
double lr_of(const json& v, const std::string& where) {
  if (!v.is_number() || !(v.get<double>() > 0) || v.get<double>() > 1)
    throw_error(ErrorCode::invalid_argument, where, ": expected a learning rate in (0, 1], found ", v.dump());
  return v.get<double>();
}

}  // namespace

std::vector<RunSpec> load_sweep(const std::string& path) {
  const json j = read_json_file(path);
  std::vector<RunSpec> runs;
  if (j.is_object()) {
    for (const auto& [key, v] : j.items())
      if (key != "seeds" && key != "lrs")
        throw_error(ErrorCode::invalid_argument, path, ": unknown field '", key, "' (expected seeds, lrs)");
    if (!j.contains("seeds") || !j["seeds"].is_array() || j["seeds"].empty() || !j.contains("lrs") ||
        !j["lrs"].is_array() || j["lrs"].empty())
      throw_error(ErrorCode::invalid_argument, path, ": 'seeds' and 'lrs' must be non-empty arrays");
    std::vector<uint64_t> seeds;
    std::vector<double> lrs;
    for (size_t i = 0; i < j["seeds"].size(); ++i)
      seeds.push_back(seed_of(j["seeds"][i], path + ": seeds[" + std::to_string(i) + "]"));
    for (size_t i = 0; i < j["lrs"].size(); ++i)
      lrs.push_back(lr_of(j["lrs"][i], path + ": lrs[" + std::to_string(i) + "]"));
    runs = sweep_grid(seeds, lrs);
  } else if (j.is_array() && !j.empty()) {
    for (size_t i = 0; i < j.size(); ++i) {
      const std::string where = path + ": [" + std::to_string(i) + "]";
      if (!j[i].is_object() || !j[i].contains("seed") || !j[i].contains("lr") || j[i].size() != 2)
        throw_error(ErrorCode::invalid_argument, where, ": expected {\"seed\": ..., \"lr\": ...}");
      runs.push_back({seed_of(j[i]["seed"], where + ".seed"), lr_of(j[i]["lr"], where + ".lr")});
    }
  } else {
    throw_error(ErrorCode::invalid_argument, path,
                ": expected {\"seeds\": [...], \"lrs\": [...]} or a non-empty array of {\"seed\", \"lr\"}");
  }
  std::set<std::string> names;
  for (const RunSpec& r : runs)
    if (!names.insert(run_name(r)).second)
      throw_error(ErrorCode::invalid_argument, path, ": run ", run_name(r), " appears twice");
  return runs;
}

std::string run_name(const RunSpec& run) {
  std::ostringstream s;
  s.precision(6);
  s << "seed" << run.seed << "_lr" << run.lr;
  return s.str();
}

TrainConfig run_config(const TrainConfig& base, const RunSpec& run) {
  TrainConfig c = base;
  c.seed = run.seed;
  c.schedule.lr = run.lr;
  if (!base.checkpoint_dir.empty()) {
    c.checkpoint_dir = path_join(base.checkpoint_dir, run_name(run));
    if (!base.log_csv.empty()) c.log_csv = path_join(c.checkpoint_dir, "log.csv");
  }
  return c;
}

PackedTrainer::PackedTrainer(const TrainConfig& base, const std::vector<RunSpec>& runs,
                             const TrainDevice& where)
    : base_(base), runs_(runs) {
  MAMBA_CHECK(!runs_.empty(), "a sweep needs at least one run");
  MAMBA_CHECK(where.comm == nullptr || where.comm->size() == 1, "packed runs are one process");
  std::set<std::string> names;
  for (const RunSpec& r : runs_) {
    if (!names.insert(run_name(r)).second)
      throw_error(ErrorCode::invalid_argument, "sweep: run ", run_name(r), " appears twice");
    const TrainConfig c = run_config(base_, r);
    const bool resume =
        !c.checkpoint_dir.empty() && std::filesystem::exists(path_join(c.checkpoint_dir, "latest"));
    if (resume) {
      TrainConfig saved = load_checkpoint_config(c.checkpoint_dir);
      saved.steps = std::max(saved.steps, c.steps);  // more steps continue the run
      trainers_.push_back(std::make_unique<Trainer>(saved, c.checkpoint_dir, where));
    } else {
      trainers_.push_back(std::make_unique<Trainer>(c, where));
    }
  }
  evals_.resize(trainers_.size());
  last_.resize(trainers_.size());
}

std::vector<StepStats> PackedTrainer::step() {
  std::vector<size_t> active;
  for (size_t i = 0; i < trainers_.size(); ++i)
    if (trainers_[i]->steps_done() < trainers_[i]->config().steps) active.push_back(i);
  for (size_t i : active) trainers_[i]->launch_step();  // every run's device work queued first
  std::vector<StepStats> out;
  for (size_t i : active) {
    out.push_back(trainers_[i]->finish_step());
    last_[i] = out.back();
  }
  return out;
}

void PackedTrainer::run(const PackedCallbacks& cb) {
  for (auto& t : trainers_) t->begin_run();
  while (true) {
    std::vector<size_t> active;
    for (size_t i = 0; i < trainers_.size(); ++i)
      if (trainers_[i]->steps_done() < trainers_[i]->config().steps) active.push_back(i);
    if (active.empty()) break;
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<StepStats> stats = step();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int64_t tokens = 0;
    for (const StepStats& s : stats) tokens += s.tokens;
    ++packed_steps_;
    if (cb.on_packed_step) cb.on_packed_step(packed_steps_, seconds, tokens);
    for (size_t k = 0; k < active.size(); ++k) {
      const size_t i = active[k];
      if (cb.on_step) cb.on_step(i, stats[k]);
      RunCallbacks run_cb;
      run_cb.on_eval = [&](int64_t step, const EvalStats& e) {
        evals_[i] = e;
        if (cb.on_eval) cb.on_eval(i, step, e);
      };
      trainers_[i]->after_step(stats[k], run_cb);
    }
  }
  if (!base_.checkpoint_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(base_.checkpoint_dir, ec);
    write_file_atomic(path_join(base_.checkpoint_dir, "runs.csv"), results_csv());
  }
}

std::string PackedTrainer::results_csv() const {
  std::string out = "run,seed,lr,steps,loss,acc,eval_length,eval_acc,eval_scaled_acc\n";
  char line[512];
  for (size_t i = 0; i < trainers_.size(); ++i) {
    const EvalStats& e = evals_[i];
    std::snprintf(line, sizeof line, "%s,%llu,%.6g,%lld,%.6f,%.4f,%lld,%.4f,%.4f\n",
                  run_name(runs_[i]).c_str(), static_cast<unsigned long long>(runs_[i].seed), runs_[i].lr,
                  static_cast<long long>(trainers_[i]->steps_done()), last_[i].loss, last_[i].accuracy,
                  static_cast<long long>(e.length), e.accuracy, e.scaled_accuracy);
    out += line;
  }
  return out;
}

}  // namespace mamba::train
