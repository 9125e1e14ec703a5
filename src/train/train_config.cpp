// Training configuration JSON (see train_config.h): a strict reader that names the field of
// any error, and the writer used for trainer.json.
#include "train/train_config.h"

#include <set>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_guard.h"

namespace mamba::train {

using nlohmann::json;

namespace {

// Reads the fields of one JSON object, remembering which were used so `finish` can reject
// unknown ones (a typo must not silently fall back to a default).
struct Fields {
  const json& j;
  std::string source, prefix;
  std::set<std::string> used;

  std::string where(const std::string& key) const { return source + ": field '" + prefix + key + "'"; }
  [[noreturn]] void bad(const std::string& key, const char* expected) const {
    throw_error(ErrorCode::invalid_argument, where(key), " expected ", expected, ", found ",
                json_excerpt(j.at(key)));
  }
  const json* find(const std::string& key) {
    used.insert(key);
    return j.contains(key) && !j.at(key).is_null() ? &j.at(key) : nullptr;
  }
  int64_t integer(const std::string& key, int64_t def) {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_number_integer()) bad(key, "an integer");
    return v->get<int64_t>();
  }
  double number(const std::string& key, double def) {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_number()) bad(key, "a number");
    return v->get<double>();
  }
  std::string string(const std::string& key, const std::string& def) {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_string()) bad(key, "a string");
    return v->get<std::string>();
  }
  std::vector<std::string> strings(const std::string& key) {
    const json* v = find(key);
    if (!v) return {};
    if (!v->is_array()) bad(key, "a list of strings");
    std::vector<std::string> out;
    for (const json& e : *v) {
      if (!e.is_string()) bad(key, "a list of strings");
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  Fields child(const std::string& key) {
    static const json empty = json::object();
    const json* v = find(key);
    if (v && !v->is_object()) bad(key, "an object");
    return Fields{v ? *v : empty, source, prefix + key + ".", {}};
  }
  void finish() const {
    for (const auto& item : j.items())
      if (!used.count(item.key()))
        throw_error(ErrorCode::invalid_argument, source, ": unknown field '", prefix, item.key(), "'");
  }
};

void require(bool ok, const std::string& source, const char* field, const char* expected, double found) {
  if (!ok)
    throw_error(ErrorCode::invalid_argument, source, ": field '", field, "' expected ", expected, ", found ",
                found);
}

}  // namespace

json TrainConfig::default_model() {
  return {{"d_model", 32}, {"n_layer", 1}, {"ssm_cfg", {{"layer", "Mamba3"}, {"d_state", 64}}}};
}

TrainConfig parse_train_config(const json& j, const std::string& source) {
  if (!j.is_object())
    throw_error(ErrorCode::invalid_argument, source, ": expected a JSON object, found ", j.type_name());
  TrainConfig c;
  Fields f{j, source, "", {}};
  if (const json* m = f.find("model")) {
    if (!m->is_object()) f.bad("model", "an object (a state-spaces/mamba config.json)");
    c.model = *m;
  }
  c.task = f.string("task", c.task);
  Fields t = f.child("task_options");
  c.task_options.n_data = t.integer("n_data", c.task_options.n_data);
  c.task_options.vocab = t.integer("vocab", c.task_options.vocab);
  c.task_options.n_pairs = t.integer("n_pairs", c.task_options.n_pairs);
  c.task_options.power_a = t.number("power_a", c.task_options.power_a);
  c.task_options.group_order = t.integer("group_order", c.task_options.group_order);
  c.task_options.text_files = t.strings("text_files");
  t.finish();
  Fields cu = f.child("curriculum");
  c.curriculum.min_length = cu.integer("min_length", c.curriculum.min_length);
  c.curriculum.start_max = cu.integer("start_max", c.curriculum.start_max);
  c.curriculum.end_max = cu.integer("end_max", c.curriculum.end_max);
  c.curriculum.n_stages = cu.integer("n_stages", c.curriculum.n_stages);
  c.curriculum.steps_per_stage = cu.integer("steps_per_stage", c.curriculum.steps_per_stage);
  cu.finish();
  c.batch = f.integer("batch", c.batch);
  c.length_buckets = f.integer("length_buckets", c.length_buckets);
  c.steps = f.integer("steps", c.steps);
  c.schedule.lr = f.number("lr", c.schedule.lr);
  c.schedule.kind = parse_schedule_kind(f.string("schedule", schedule_kind_name(c.schedule.kind)));
  c.schedule.warmup_steps = f.integer("warmup", c.schedule.warmup_steps);
  c.schedule.min_lr = f.number("min_lr", c.schedule.min_lr);
  c.adamw.beta1 = f.number("beta1", c.adamw.beta1);
  c.adamw.beta2 = f.number("beta2", c.adamw.beta2);
  c.adamw.eps = f.number("eps", c.adamw.eps);
  c.adamw.weight_decay = f.number("weight_decay", c.adamw.weight_decay);
  c.clip = f.number("clip", c.clip);
  const int64_t seed = f.integer("seed", 0);
  require(seed >= 0, source, "seed", ">= 0", static_cast<double>(seed));
  c.seed = static_cast<uint64_t>(seed);
  c.eval_every = f.integer("eval_every", c.eval_every);
  c.eval_length = f.integer("eval_length", c.eval_length);
  c.eval_batches = f.integer("eval_batches", c.eval_batches);
  c.eval_batch = f.integer("eval_batch", c.eval_batch);
  c.checkpoint_dir = f.string("checkpoint_dir", c.checkpoint_dir);
  c.checkpoint_every = f.integer("checkpoint_every", c.checkpoint_every);
  c.keep_checkpoints = f.integer("keep_checkpoints", c.keep_checkpoints);
  c.log_csv = f.string("log", c.log_csv);
  f.finish();
  validate(c, source);
  return c;
}

void validate(const TrainConfig& c, const std::string& source) {
  auto d = [](int64_t v) { return static_cast<double>(v); };
  require(c.batch > 0, source, "batch", "> 0", d(c.batch));
  require(c.steps >= 0, source, "steps", ">= 0", d(c.steps));
  require(c.length_buckets >= 1 && c.length_buckets <= c.batch, source, "length_buckets", "in [1, batch]",
          d(c.length_buckets));
  require(c.schedule.lr > 0, source, "lr", "> 0", c.schedule.lr);
  require(c.schedule.warmup_steps >= 0, source, "warmup", ">= 0", d(c.schedule.warmup_steps));
  require(c.schedule.min_lr >= 0 && c.schedule.min_lr <= c.schedule.lr, source, "min_lr", "in [0, lr]",
          c.schedule.min_lr);
  require(c.adamw.beta1 >= 0 && c.adamw.beta1 < 1, source, "beta1", "in [0, 1)", c.adamw.beta1);
  require(c.adamw.beta2 >= 0 && c.adamw.beta2 < 1, source, "beta2", "in [0, 1)", c.adamw.beta2);
  require(c.adamw.eps > 0, source, "eps", "> 0", c.adamw.eps);
  require(c.adamw.weight_decay >= 0, source, "weight_decay", ">= 0", c.adamw.weight_decay);
  require(c.eval_every >= 0, source, "eval_every", ">= 0", d(c.eval_every));
  require(c.eval_length >= 0, source, "eval_length", ">= 0", d(c.eval_length));
  require(c.eval_batches > 0, source, "eval_batches", "> 0", d(c.eval_batches));
  require(c.eval_batch >= 0, source, "eval_batch", ">= 0", d(c.eval_batch));
  require(c.checkpoint_every >= 0, source, "checkpoint_every", ">= 0", d(c.checkpoint_every));
  require(c.keep_checkpoints >= 1, source, "keep_checkpoints", ">= 1", d(c.keep_checkpoints));
  c.curriculum.validate();
}

json read_json_file(const std::string& path) {
  const std::string text = read_file(path);
  check_json_depth(text, path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw_error(ErrorCode::parse, path, ": malformed JSON: ", e.what());
  }
}

TrainConfig load_train_config(const std::string& path) {
  return parse_train_config(read_json_file(path), path);
}

json to_json(const TrainConfig& c) {
  const TaskOptions& o = c.task_options;
  const Curriculum& cu = c.curriculum;
  return json{{"model", c.model},
              {"task", c.task},
              {"task_options",
               {{"n_data", o.n_data},
                {"vocab", o.vocab},
                {"n_pairs", o.n_pairs},
                {"power_a", o.power_a},
                {"group_order", o.group_order},
                {"text_files", o.text_files}}},
              {"curriculum",
               {{"min_length", cu.min_length},
                {"start_max", cu.start_max},
                {"end_max", cu.end_max},
                {"n_stages", cu.n_stages},
                {"steps_per_stage", cu.steps_per_stage}}},
              {"batch", c.batch},
              {"length_buckets", c.length_buckets},
              {"steps", c.steps},
              {"lr", c.schedule.lr},
              {"schedule", schedule_kind_name(c.schedule.kind)},
              {"warmup", c.schedule.warmup_steps},
              {"min_lr", c.schedule.min_lr},
              {"beta1", c.adamw.beta1},
              {"beta2", c.adamw.beta2},
              {"eps", c.adamw.eps},
              {"weight_decay", c.adamw.weight_decay},
              {"clip", c.clip},
              {"seed", c.seed},
              {"eval_every", c.eval_every},
              {"eval_length", c.eval_length},
              {"eval_batches", c.eval_batches},
              {"eval_batch", c.eval_batch},
              {"checkpoint_dir", c.checkpoint_dir},
              {"checkpoint_every", c.checkpoint_every},
              {"keep_checkpoints", c.keep_checkpoints},
              {"log", c.log_csv}};
}

models::ModelConfig model_config_for(const TrainConfig& c, const Task& task) {
  json m = c.model;
  const std::string source = "training config field 'model'";
  if (m.contains("vocab_size")) {
    if (!m.at("vocab_size").is_number_integer() || m.at("vocab_size").get<int64_t>() < task.vocab_size())
      throw_error(ErrorCode::invalid_argument, source, ": vocab_size ", json_excerpt(m.at("vocab_size")),
                  " is smaller than the ", task.name(), " vocabulary (", task.vocab_size(), ")");
  } else {
    m["vocab_size"] = task.vocab_size();
  }
  return models::parse_model_config(m, source);
}

}  // namespace mamba::train
