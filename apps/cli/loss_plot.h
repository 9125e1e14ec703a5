// `train --plot FILE.png`: the run's training loss per step as a PNG chart (raw loss and its
// moving average, labelled axes), drawn from the CSV log when there is one (a resumed run's curve
// then starts at step 1) or from the steps this process ran.
#pragma once
#include <string>
#include <vector>

namespace mambacpp::cli {

struct LossCurve {
  std::vector<double> steps, loss;
};

// The step and loss columns of a `train --log` CSV. Throws Error(parse) naming the file and line.
LossCurve read_loss_csv(const std::string& path);

// The chart as PNG bytes (900 x 540); `title` is drawn above it (lowercase, ASCII).
std::string loss_plot_png(const LossCurve& curve, const std::string& title);

// Packed runs (`train --runs/--lrs --plot`): each run's moving-average loss in its own colour on
// one chart, with a legend of the run names (the first 15, then "and N more"). Same size.
struct NamedCurve {
  std::string name;
  LossCurve curve;
};
std::string runs_plot_png(const std::vector<NamedCurve>& runs, const std::string& title);

}  // namespace mambacpp::cli
