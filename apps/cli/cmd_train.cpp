// `mambacpp train`: train a model from scratch on a synthetic task or byte-level text (CPU, or
// --device cuda with optional --dtype bf16 mixed precision), from a JSON config and/or flags (a
// flag overrides the config; --resume continues a checkpoint with its own config), with a
// one-line progress bar on stderr, a CSV log and the final training throughput. `mambacpp eval`
// reports accuracy and scaled accuracy of a trained model at held-out lengths.
#include <mambacpp/mambacpp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "flags.h"
#include "launcher.h"
#include "loss_plot.h"

namespace mambacpp::cli {

namespace {

// Every flag is optional: only the ones given change the config (train::Overrides).
struct TrainFlags : train::Overrides {
  std::string config_path, resume, plot;
  int threads = 0;
  bool print_config = false;
  // Where the run computes (not saved in the checkpoint: give them again on --resume).
  std::string device, dtype = "f32";  // device: cpu, or cuda with --gpus
  // Data parallel (docs/distributed.md): ranks launched here, the optimizer sharded or not.
  int gpus = 0, procs = 0;
  bool zero1 = false;
  std::string dist_backend = "auto";
  std::vector<std::string> kernels;  // --kernel NAME=VALUE
  // Packed runs (train::PackedTrainer): seeds × learning rates in one process.
  int64_t runs = 0;
  std::vector<double> lrs;
  std::string sweep;
  bool graph = false;
};

void add_model_flags(CLI::App& app, TrainFlags& f) {
  app.add_option("--layer", f.layer, "SSM layer kind: Mamba1, Mamba2 or Mamba3");
  app.add_option("--d-model", f.d_model, "model width")->check(int_range(1));
  app.add_option("--n-layer", f.n_layer, "number of blocks")->check(int_range(1));
  app.add_option("--d-state", f.d_state, "SSM state size N")->check(int_range(1));
  app.add_option("--headdim", f.headdim, "head dimension (Mamba-2/3)")->check(int_range(1));
  app.add_option("--expand", f.expand, "d_inner / d_model")
      ->check(real_range(0, std::numeric_limits<double>::infinity(), true));
  app.add_option("--chunk-size", f.chunk_size, "chunk size of the scan (Mamba-2/3)")->check(int_range(1));
  app.add_option("--mimo", f.mimo, "Mamba-3 MIMO (true/false)");
  app.add_option("--mimo-rank", f.mimo_rank, "Mamba-3 MIMO rank R")->check(int_range(1));
  app.add_option("--rope", f.rope, "Mamba-3 state rotation: data_dependent, none or data_independent");
  app.add_option("--d-intermediate", f.d_intermediate, "gated-MLP width per block (0 = none)")
      ->check(int_range(0));
}

void add_task_flags(CLI::App& app, TrainFlags& f) {
  std::string names;
  for (const std::string& n : train::task_names()) names += (names.empty() ? "" : ", ") + n;
  app.add_option("--task", f.task, "task: " + names);
  app.add_option("--text", f.text_files, "text files for --task text (byte-level, ids 0..255)");
  app.add_option("--n-data", f.n_data, "selective_copy: data tokens")->check(int_range(1));
  app.add_option("--mqar-vocab", f.mqar_vocab, "mqar: vocabulary size")->check(int_range(1));
  app.add_option("--mqar-pairs", f.mqar_pairs, "mqar: key-value pairs")->check(int_range(1));
  app.add_option("--group-order", f.group_order, "group: order n of the cyclic group Z_n")
      ->check(int_range(1));
  app.add_option("--length", f.length, "fixed training length (min = max = L, no curriculum)")
      ->check(int_range(1));
  app.add_option("--min-length", f.min_length, "curriculum: shortest sequence")->check(int_range(1));
  app.add_option("--start-max-length", f.start_max, "curriculum: longest sequence of the first stage")
      ->check(int_range(1));
  app.add_option("--max-length", f.max_length, "curriculum: longest sequence of the last stage")
      ->check(int_range(1));
  app.add_option("--stages", f.stages, "curriculum: number of stages (1 = fixed range)")->check(int_range(1));
  app.add_option("--steps-per-stage", f.steps_per_stage, "curriculum: steps per stage")->check(int_range(1));
}

void add_optim_flags(CLI::App& app, TrainFlags& f) {
  app.add_option("--batch", f.batch, "sequences per step")->check(int_range(1));
  app.add_option("--length-buckets", f.length_buckets,
                 "run each batch as N groups of rows of similar length, each padded to its own longest row "
                 "(the same step up to rounding, less padding; eager steps)")
      ->check(int_range(1));
  app.add_option("--steps", f.steps, "total optimizer steps")->check(int_range(1));
  app.add_option("--lr", f.lr, "peak learning rate")
      ->check(real_range(0, std::numeric_limits<double>::infinity(), true));
  app.add_option("--schedule", f.schedule, "constant or cosine (after linear warm-up)");
  app.add_option("--warmup", f.warmup, "warm-up steps")->check(int_range(0));
  app.add_option("--min-lr", f.min_lr, "final learning rate of the cosine schedule")
      ->check(real_range(0, std::numeric_limits<double>::infinity()));
  app.add_option("--weight-decay", f.weight_decay,
                 "AdamW weight decay (not on biases, norms, A_log, D, dt_bias)")
      ->check(real_range(0, std::numeric_limits<double>::infinity()));
  app.add_option("--clip", f.clip, "global gradient-norm clipping (0 = off)")
      ->check(real_range(0, std::numeric_limits<double>::infinity()));
  app.add_option("--beta1", f.beta1, "AdamW beta1")->check(real_range(0, 1, false, true));
  app.add_option("--beta2", f.beta2, "AdamW beta2")->check(real_range(0, 1, false, true));
  app.add_option("--seed", f.seed, "seed of the initialization and of every batch")->check(int_range(0));
  app.add_option("--eval-every", f.eval_every, "evaluate every N steps (0 = at the end only)")
      ->check(int_range(0));
  app.add_option("--eval-length", f.eval_length, "evaluation length (default: the curriculum's maximum)")
      ->check(int_range(1));
  app.add_option("--eval-batches", f.eval_batches, "evaluation batches")->check(int_range(1));
  app.add_option("--checkpoint-dir", f.checkpoint_dir, "checkpoint folder (ROOT/step_N + ROOT/latest)");
  app.add_option("--checkpoint-every", f.checkpoint_every, "checkpoint every N steps (0 = at the end only)")
      ->check(int_range(0));
  app.add_option("--keep-checkpoints", f.keep_checkpoints, "newest checkpoints kept")->check(int_range(1));
  app.add_option("--log", f.log, "CSV log: step, lr, loss, acc, tokens/s, ...");
}

train::Config resolve_config(const TrainFlags& f) {
  train::Config c;
  if (!f.resume.empty())
    c = train::Config::from_checkpoint(f.resume);
  else if (!f.config_path.empty())
    c = train::Config::load(f.config_path);
  c.apply(f);
  return c;
}

std::string duration_text(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  return buf;
}

// The progress line: rewritten in place on a terminal, else printed every ~2% of the run.
class Progress {
public:
  Progress(int64_t first_step, int64_t total) : first_(first_step), total_(total), tty_(isatty(2) != 0) {}

  void step(const train::StepStats& s) {
    tokens_ += s.tokens;
    seconds_ += s.seconds;
    const int64_t done = s.step - first_;
    const int64_t every = std::max<int64_t>(1, (total_ - first_) / 50);
    if (!tty_ && s.step % every != 0 && s.step != total_) return;
    const double eta =
        done > 0 ? seconds_ / static_cast<double>(done) * static_cast<double>(total_ - s.step) : 0.0;
    std::fprintf(stderr, "%sstep %lld/%lld | loss %.4f | acc %5.1f%% | len <= %lld | %.0f tok/s | eta %s%s",
                 tty_ ? "\r\033[K" : "", static_cast<long long>(s.step), static_cast<long long>(total_),
                 s.loss, 100.0 * s.accuracy, static_cast<long long>(s.max_length),
                 seconds_ > 0 ? static_cast<double>(tokens_) / seconds_ : 0.0, duration_text(eta).c_str(),
                 tty_ ? "" : "\n");
    std::fflush(stderr);
  }
  void line(const std::string& text) { std::fprintf(stderr, "%s%s\n", tty_ ? "\r\033[K" : "", text.c_str()); }
  void finish() {
    if (tty_) std::fprintf(stderr, "\n");
  }

private:
  int64_t first_, total_;
  bool tty_;
  int64_t tokens_ = 0;
  double seconds_ = 0;
};

std::string eval_text(int64_t step, const train::EvalStats& e) {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "eval @ step %lld: length %lld, loss %.4f, accuracy %.2f%%, scaled accuracy %.2f%%",
                static_cast<long long>(step), static_cast<long long>(e.length), e.loss, 100.0 * e.accuracy,
                100.0 * e.scaled_accuracy);
  return buf;
}

// --plot: the loss curve of the log (the whole run, resumed or not), else of the steps run here.
void write_plot(const std::string& path, const train::Config& config, const Model& model,
                const LossCurve& here) {
  const LossCurve curve = config.log_csv().empty() ? here : read_loss_csv(config.log_csv());
  char title[160];
  std::snprintf(title, sizeof title, "training loss: %s, %s x %lld, d_model %lld", config.task().c_str(),
                model.layer_kind().c_str(), static_cast<long long>(model.n_layer()),
                static_cast<long long>(model.d_model()));
  mambacpp::write_file_atomic(path, loss_plot_png(curve, title));
}

// The ranks of a data-parallel run on this host (--gpus N / --procs N), 0 when not asked for.
int requested_ranks(const TrainFlags& f) {
  if (f.gpus > 0 && f.procs > 0 && f.gpus != f.procs)
    throw_error(ErrorCode::invalid_argument, "train: --gpus ", f.gpus, " and --procs ", f.procs, " disagree");
  return std::max(f.gpus, f.procs);
}

// Packed runs: the sweep's runs stepped together; a summary line every tenth of the steps, a table
// of the runs' final numbers, and the aggregate throughput (tokens of all runs per second of
// packed steps, the first two left out: they record the graphs).
int run_packed(const TrainFlags& f, const train::Config& config, const train::Placement& where) {
  if (!f.resume.empty())
    throw_error(ErrorCode::invalid_argument,
                "--resume takes one run; packed runs continue from their folders under --checkpoint-dir");
  if (!f.sweep.empty() && (f.runs > 0 || !f.lrs.empty()))
    throw_error(ErrorCode::invalid_argument, "--sweep names the runs itself (no --runs/--lrs with it)");
  std::vector<train::RunSpec> runs;
  if (!f.sweep.empty()) {
    runs = train::load_sweep(f.sweep);
  } else {
    std::vector<uint64_t> seeds;
    for (int64_t i = 0; i < std::max<int64_t>(f.runs, 1); ++i)
      seeds.push_back(config.seed() + static_cast<uint64_t>(i));
    runs = train::sweep_grid(seeds, f.lrs.empty() ? std::vector<double>{config.lr()} : f.lrs);
  }
  train::PackedTrainer packed(config, runs, where);
  const Model& model = packed.trainer(0).model();
  std::fprintf(stderr,
               "train: task %s, %s x %lld, d_model %lld, %lld parameters a run, batch %lld, %zu runs packed, "
               "%lld steps on %s%s\n",
               config.task().c_str(), model.layer_kind().c_str(), static_cast<long long>(model.n_layer()),
               static_cast<long long>(model.d_model()), static_cast<long long>(model.n_params()),
               static_cast<long long>(config.batch()), packed.size(), static_cast<long long>(config.steps()),
               f.device.c_str(), where.matmul_dtype == DType::bf16 ? " (bf16 mixed precision)" : "");
  int64_t tokens = 0, timed = 0;
  double seconds = 0;
  const int64_t every = std::max<int64_t>(1, config.steps() / 10);
  train::PackedCallbacks cb;
  cb.on_packed_step = [&](int64_t n, double s, int64_t t) {
    if (n > 2) {
      tokens += t;
      seconds += s;
      ++timed;
    }
    if (n % every != 0) return;
    double loss = 0, acc = 0;
    int64_t step = 0;
    for (size_t i = 0; i < packed.size(); ++i) {
      loss += packed.last_steps()[i].loss;
      acc += packed.last_steps()[i].accuracy;
      step = std::max(step, packed.last_steps()[i].step);
    }
    const double k = static_cast<double>(packed.size());
    std::fprintf(stderr, "step %lld: mean loss %.4f, mean acc %.2f%%, %.0f tokens/s aggregate\n",
                 static_cast<long long>(step), loss / k, 100.0 * acc / k,
                 s > 0 ? static_cast<double>(t) / s : 0.0);
  };
  // --plot: every run's curve, from its log when it has one (a continued run's whole curve).
  std::vector<NamedCurve> curves(packed.size());
  for (size_t i = 0; i < packed.size(); ++i) curves[i].name = train::run_name(packed.spec(i));
  cb.on_step = [&](size_t i, const train::StepStats& s) {
    curves[i].curve.steps.push_back(static_cast<double>(s.step));
    curves[i].curve.loss.push_back(s.loss);
  };
  packed.run(cb);
  if (!f.plot.empty()) {
    for (size_t i = 0; i < packed.size(); ++i)
      if (!packed.trainer(i).config().log_csv().empty())
        curves[i].curve = read_loss_csv(packed.trainer(i).config().log_csv());
    char title[160];
    std::snprintf(title, sizeof title, "training loss: %s, %s x %lld, d_model %lld, %zu runs",
                  config.task().c_str(), model.layer_kind().c_str(), static_cast<long long>(model.n_layer()),
                  static_cast<long long>(model.d_model()), packed.size());
    mambacpp::write_file_atomic(f.plot, runs_plot_png(curves, title));
  }
  std::printf("%-24s %8s %10s %8s %10s %10s\n", "run", "steps", "loss", "acc", "eval acc", "scaled");
  for (size_t i = 0; i < packed.size(); ++i) {
    const train::EvalStats e = packed.last_evals()[i];
    std::printf("%-24s %8lld %10.4f %7.2f%% %9.2f%% %9.2f%%\n", train::run_name(packed.spec(i)).c_str(),
                static_cast<long long>(packed.trainer(i).steps_done()), packed.last_steps()[i].loss,
                100.0 * packed.last_steps()[i].accuracy, 100.0 * e.accuracy, 100.0 * e.scaled_accuracy);
  }
  if (!config.checkpoint_dir().empty())
    std::printf("results: %s/runs.csv\n", config.checkpoint_dir().c_str());
  if (where.graph && where.device != Device::cpu) {
    int64_t replays = 0;
    for (size_t i = 0; i < packed.size(); ++i) replays += packed.trainer(i).graph_replays();
    std::printf("graph: %lld run steps replayed a captured CUDA graph\n", static_cast<long long>(replays));
  }
  std::printf(
      "throughput: %.0f tokens/s aggregate over %zu runs, %lld packed steps, %lld tokens (%s%s, training "
      "steps "
      "only)\n",
      seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0, packed.size(), static_cast<long long>(timed),
      static_cast<long long>(tokens), f.device.c_str(),
      where.matmul_dtype == DType::bf16 ? ", bf16 mixed precision" : "");
  return 0;
}

int run_train(const TrainFlags& f_in) {
  TrainFlags f = f_in;
  if (f.device.empty()) f.device = f.gpus > 0 ? "cuda" : "cpu";
  const int ranks = requested_ranks(f);
  const std::optional<dist::DistConfig> env_rank = rank_from_env();
  if (env_rank && ranks > 0 && ranks != env_rank->size)
    throw_error(ErrorCode::invalid_argument, "train: --", f.gpus > 0 ? "gpus " : "procs ", ranks,
                " but this process is a rank of ", env_rank->size, " (the launcher's or mpirun's)");
  if (!env_rank && ranks > 1) {
    // The launcher: the flags and the config are checked once here (one error line, not N),
    // then every rank runs this same command line with its rank in the environment.
    const train::Config config = resolve_config(f);
    if (config.batch() % ranks != 0)
      throw_error(ErrorCode::invalid_argument, "train: the global batch ", config.batch(),
                  " is not divisible by ", ranks, " ranks (--batch must be a multiple of the rank count)");
    check_dtype_device(f.dtype, f.device);
    parse_device(f.device);  // no CUDA (build or device): one line here, not one per rank
    if (f.print_config) {
      std::printf("%s\n", config.to_json(2).c_str());
      return 0;
    }
    return launch_ranks(ranks, "train");
  }
  // A rank (or the single process): the communicator first, before any device work, since on
  // CUDA it selects the rank's GPU (its local rank).
  std::unique_ptr<dist::Communicator> comm;
  if (env_rank && env_rank->size > 1) {
    dist::DistConfig dc = *env_rank;
    dc.backend = f.dist_backend;
    comm = dist::make_communicator(dc, f.device == "cuda" ? Device::cuda : Device::cpu);
    // CPU ranks of one host share its cores.
    if (f.threads == 0 && f.device == "cpu")
      f.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / dc.size);
  }
  const bool lead = !comm || comm->rank() == 0;  // prints, plots; the others only compute
  if (!f.plot.empty() &&
      lead) {  // its folder is made, as the log's and the checkpoints' are, and checked first
    std::error_code ec;
    const std::filesystem::path parent = std::filesystem::path(f.plot).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    check_output_path("--plot", f.plot);
  }
  set_num_threads(f.threads);
  const train::Config config = resolve_config(f);
  if (f.print_config) {
    if (lead) std::printf("%s\n", config.to_json(2).c_str());
    return 0;
  }
  train::Placement where;
  where.device = parse_device(f.device);
  where.plan = kernel_plan(f.kernels);
  if (f.dtype == "bf16")
    where.matmul_dtype = DType::bf16;
  else if (f.dtype != "f32")
    throw_error(ErrorCode::invalid_argument, "--dtype expected f32 or bf16, found '", f.dtype, "'");
  check_dtype_device(f.dtype, f.device);
  where.comm = comm.get();
  where.zero1 = f.zero1;
  where.graph = f.graph;
  if (f.runs > 0 || !f.lrs.empty() || !f.sweep.empty()) {
    if (comm)
      throw_error(ErrorCode::invalid_argument, "--runs/--lrs/--sweep are one process (no --gpus/--procs)");
    return run_packed(f, config, where);
  }
  train::Trainer trainer =
      f.resume.empty() ? train::Trainer(config, where) : train::Trainer(config, f.resume, where);
  const Model& model = trainer.model();
  // Device memory before the first step (weights, gradients, moments), then the peak while training.
  reset_device_memory_peak(where.device);
  const size_t held_before = device_memory(where.device).in_use;
  if (!lead) {  // a rank other than 0: the same steps, collectives and checkpoints, silently
    trainer.run();
    return 0;
  }
  std::string ranks_text;
  if (comm)
    ranks_text =
        " x " + std::to_string(comm->size()) + " ranks (" + comm->name() + (f.zero1 ? ", ZeRO-1" : "") + ")";
  std::fprintf(
      stderr,
      "train: task %s, %s x %lld, d_model %lld, %lld parameters, batch %lld, %s %lld steps on %s%s%s\n",
      config.task().c_str(), model.layer_kind().c_str(), static_cast<long long>(model.n_layer()),
      static_cast<long long>(model.d_model()), static_cast<long long>(model.n_params()),
      static_cast<long long>(config.batch()), f.resume.empty() ? "from scratch," : "resuming,",
      static_cast<long long>(config.steps()), f.device.c_str(), ranks_text.c_str(),
      where.matmul_dtype == DType::bf16 ? " (bf16 mixed precision)" : "");
  Progress progress(trainer.steps_done(), config.steps());
  train::EvalStats last_eval;
  train::RunCallbacks callbacks;
  // Training steps only (no evaluation or checkpoints), the run's first step left out when there
  // are more: it pays the one-time costs (cuBLAS handles, the allocator's first blocks).
  int64_t step_tokens = 0, timed_steps = 0;
  const int64_t steps_before = trainer.steps_done();
  double step_seconds = 0;
  LossCurve curve;
  const int64_t first_timed = trainer.steps_done() + (config.steps() - trainer.steps_done() > 1 ? 2 : 1);
  callbacks.on_step = [&](const train::StepStats& s) {
    curve.steps.push_back(static_cast<double>(s.step));
    curve.loss.push_back(s.loss);
    if (s.step >= first_timed) {
      step_tokens += s.tokens;
      step_seconds += s.seconds;
      ++timed_steps;
    }
    progress.step(s);
  };
  callbacks.on_eval = [&](int64_t step, const train::EvalStats& e) {
    last_eval = e;
    progress.line(eval_text(step, e));
  };
  callbacks.on_checkpoint = [&](const std::string& dir) { progress.line("checkpoint: " + dir); };
  const auto start = std::chrono::steady_clock::now();
  trainer.run(callbacks);
  progress.finish();
  if (!f.plot.empty()) write_plot(f.plot, config, model, curve);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (last_eval.answers == 0) {
    std::printf("nothing to do: the run is at step %lld of %lld (raise --steps to continue)\n",
                static_cast<long long>(trainer.steps_done()), static_cast<long long>(config.steps()));
    return 0;
  }
  std::printf(
      "trained to step %lld in %s; final eval at length %lld: accuracy %.2f%%, scaled accuracy %.2f%%\n",
      static_cast<long long>(trainer.steps_done()), duration_text(seconds).c_str(),
      static_cast<long long>(last_eval.length), 100.0 * last_eval.accuracy,
      100.0 * last_eval.scaled_accuracy);
  // Training throughput: answer-bearing (non-pad) tokens per second of training steps, each
  // timed to the device's completion (docs/benchmarks.md, training throughput).
  std::printf("throughput: %.0f tokens/s over %lld steps, %lld tokens (%s%s, training steps only)\n",
              step_seconds > 0 ? static_cast<double>(step_tokens) / step_seconds : 0.0,
              static_cast<long long>(timed_steps), static_cast<long long>(step_tokens), f.device.c_str(),
              where.matmul_dtype == DType::bf16 ? ", bf16 mixed precision" : "");
  if (where.device != Device::cpu) {
    const size_t peak = device_memory(where.device).peak;
    const double mib = 1024.0 * 1024.0,
                 tokens = static_cast<double>(config.batch()) * static_cast<double>(config.max_length());
    const double activations = peak > held_before ? static_cast<double>(peak - held_before) : 0.0;
    std::printf(
        "memory: %.1f MiB on the device before the first step (weights, gradients, moments), peak %.1f MiB: "
        "%.1f MiB of activations and workspace, %.1f KiB per token of a %lld x %lld batch\n",
        static_cast<double>(held_before) / mib, static_cast<double>(peak) / mib, activations / mib,
        activations / 1024.0 / tokens, static_cast<long long>(config.batch()),
        static_cast<long long>(config.max_length()));
  }
  if (where.graph && where.device != Device::cpu)  // 0 tells that recording failed (its warning above)
    std::printf("graph: %lld of %lld steps replayed a captured CUDA graph\n",
                static_cast<long long>(trainer.graph_replays()),
                static_cast<long long>(trainer.steps_done() - steps_before));
  return 0;
}

}  // namespace

Runner add_train(CLI::App& app) {
  auto f = std::make_shared<TrainFlags>();
  app.add_option("-c,--config", f->config_path, "training config (JSON); flags override its fields");
  app.add_option("--resume", f->resume, "continue from a checkpoint (ROOT or ROOT/step_N) with its config");
  add_threads_option(app, f->threads);
  app.add_option("--plot", f->plot, "write the training-loss curve to this PNG at the end");
  app.add_flag("--print-config", f->print_config, "print the resolved config as JSON and exit");
  add_device_option(app, f->device,
                    "cpu or cuda (default cpu, cuda with --gpus; not saved: repeat it on --resume)");
  app.add_option("--gpus", f->gpus, "data parallel over N GPUs of this host: N ranks, one per GPU (NCCL)")
      ->check(int_range(1));
  app.add_option("--procs", f->procs,
                 "data parallel over N processes of this host (--device cpu: the CPU path)")
      ->check(int_range(1));
  app.add_flag("--zero1", f->zero1, "data parallel: shard the AdamW moments across the ranks (ZeRO-1)");
  app.add_option("--dist-backend", f->dist_backend,
                 "collectives: auto (nccl on cuda, sockets on cpu), socket, nccl")
      ->check(CLI::IsMember({"auto", "socket", "nccl"}));
  add_kernel_option(app, f->kernels);
  app.add_option("--runs", f->runs,
                 "packed runs: N seeds (--seed, --seed + 1, ...) trained together in one process, each with "
                 "its own weights, batches, log and checkpoints (--checkpoint-dir/seedS_lrX)")
      ->check(int_range(1));
  app.add_option("--lrs", f->lrs, "packed runs: these learning rates for every seed (a grid)")
      ->delimiter(',')
      ->check(real_range(0, 1, true));
  app.add_option(
      "--sweep", f->sweep,
      "packed runs from a JSON file: {\"seeds\": [...], \"lrs\": [...]} or [{\"seed\", \"lr\"}, ...]");
  app.add_flag("--graph", f->graph,
               "cuda: record each batch shape's training step in a CUDA graph and replay it (experimental)");
  app.add_option(
         "--dtype", f->dtype,
         "f32, or bf16 on cuda: mixed precision (fp32 master weights and optimizer state, bf16 GEMMs)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  add_model_flags(app, *f);
  add_task_flags(app, *f);
  add_optim_flags(app, *f);
  return [f]() { return run_train(*f); };
}

namespace {

struct EvalFlags {
  std::string model;
  std::optional<std::string> task;
  std::vector<int64_t> lengths;
  int64_t batches = 8, batch = 64;
  int64_t seed = 0;
  int threads = 0;
  std::string device = "cpu";
  std::vector<std::string> kernels;
  std::optional<int64_t> mqar_vocab, mqar_pairs, n_data, group_order;
  std::vector<std::string> text_files;
};

int run_eval(const EvalFlags& f) {
  set_num_threads(f.threads);
  if (f.batches < 1 || f.batch < 1 || f.seed < 0)
    throw_error(ErrorCode::invalid_argument, "eval: --batches and --batch must be positive and --seed >= 0");
  const std::string dir = train::resolve_model_dir(f.model);
  Model model = Model::load(dir);
  model.to(parse_device(f.device));
  Context exec(model.device(), kernel_plan(f.kernels));
  const train::Task task = train::Task::for_model(
      dir, f.task, {f.mqar_vocab, f.mqar_pairs, f.n_data, f.group_order, f.text_files});
  if (model.vocab_size() < task.vocab_size())
    throw_error(ErrorCode::invalid_argument, dir, ": vocab_size ", model.vocab_size(),
                " is smaller than the ", task.name(), " vocabulary (", task.vocab_size(), ")");
  std::vector<int64_t> lengths = f.lengths;
  if (lengths.empty()) lengths.push_back(task.default_length());
  std::printf("model %s, task %s (chance %.4f), %lld x %lld sequences per length\n", dir.c_str(),
              task.name().c_str(), task.chance(), static_cast<long long>(f.batches),
              static_cast<long long>(f.batch));
  std::printf("%8s %10s %10s %12s %10s\n", "length", "loss", "accuracy", "scaled_acc", "answers");
  for (int64_t length : lengths) {
    const train::EvalStats e =
        train::evaluate(exec, model, task, length, f.batch, f.batches, static_cast<uint64_t>(f.seed));
    std::printf("%8lld %10.4f %9.2f%% %11.2f%% %10lld\n", static_cast<long long>(e.length), e.loss,
                100.0 * e.accuracy, 100.0 * e.scaled_accuracy, static_cast<long long>(e.answers));
  }
  return 0;
}

}  // namespace

Runner add_eval(CLI::App& app) {
  auto f = std::make_shared<EvalFlags>();
  app.add_option("-m,--model", f->model, "model folder, or a checkpoint ROOT (its latest step)")->required();
  app.add_option("--task", f->task, "task (default: the checkpoint's training task)");
  app.add_option("--length", f->lengths, "evaluation lengths (several allowed)")->check(int_range(1));
  app.add_option("--batches", f->batches, "batches per length")->check(int_range(1));
  app.add_option("--batch", f->batch, "sequences per batch")->check(int_range(1));
  app.add_option("--seed", f->seed, "seed of the held-out batches")->check(int_range(0));
  app.add_option("--mqar-vocab", f->mqar_vocab, "mqar: vocabulary size")->check(int_range(1));
  app.add_option("--mqar-pairs", f->mqar_pairs, "mqar: key-value pairs")->check(int_range(1));
  app.add_option("--n-data", f->n_data, "selective_copy: data tokens")->check(int_range(1));
  app.add_option("--group-order", f->group_order, "group: order n of Z_n")->check(int_range(1));
  app.add_option("--text", f->text_files, "text files for --task text");
  add_threads_option(app, f->threads);
  add_device_option(app, f->device, "cpu or cuda (default cpu)");
  add_kernel_option(app, f->kernels);
  return [f]() { return run_eval(*f); };
}

}  // namespace mambacpp::cli
