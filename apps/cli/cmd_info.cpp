// `mambacpp info --model DIR`: architecture, layer kinds, parameters, state bytes.
#include <mambacpp/mambacpp.h>

#include <cstdio>
#include <string>

#include "commands.h"

namespace mambacpp::cli {

Runner add_info(CLI::App& app) {
  auto model_dir = std::make_shared<std::string>();
  app.add_option("-m,--model", *model_dir, "model directory (config.json + model.safetensors)")->required();
  return [model_dir]() {
    const Model model = Model::load(*model_dir);
    const ModelConfig& c = model.config();
    std::printf("model:        %s\n", model_dir->c_str());
    std::printf("format:       %s%s\n",
                c.format == CheckpointFormat::hf ? "HF transformers" : "state-spaces/mamba",
                c.family.empty() ? "" : (" (" + c.family + ")").c_str());
    std::printf("d_model:      %lld\n", static_cast<long long>(c.d_model));
    std::printf("n_layer:      %lld\n", static_cast<long long>(c.n_layer));
    std::printf("vocab:        %lld (padded to %lld)\n", static_cast<long long>(c.vocab_size),
                static_cast<long long>(c.vocab_padded));
    std::printf("norm:         %s, eps %g\n", c.rms_norm ? "RMSNorm" : "LayerNorm", c.norm_eps);
    if (c.family.empty())
      std::printf("mlp:          %s\n",
                  c.d_intermediate > 0 ? ("gated, hidden " + std::to_string(c.mlp_hidden)).c_str() : "none");
    std::printf("tied head:    %s\n", c.tie_embeddings ? "yes" : "no");
    std::printf("layers:      ");
    int64_t fixed = 0, per_token = 0;
    for (const auto& b : model.blocks()) {  // e.g. "Mamba2", "Attn(NoPE)+MoE", "Mamba2|Attn(RoPE)+MLP"
      std::string layer = b.mixer->label();
      if (b.mixer_par) layer += "|" + b.mixer_par->label();
      if (b.ffn) layer += "+" + b.ffn->label();
      if (b.mlp) layer += "+MLP";
      std::printf(" %s", layer.c_str());
      for (const auto* m : {b.mixer.get(), b.mixer_par.get()})
        if (m) {
          fixed += m->state_bytes_fixed();
          per_token += m->state_bytes_per_token();
        }
    }
    std::printf("\n");
    std::printf("parameters:   %lld\n", static_cast<long long>(model.n_params()));
    std::printf("state bytes:  %lld per sequence", static_cast<long long>(fixed));
    if (per_token > 0)
      std::printf(" + %lld per token (attention KV cache)", static_cast<long long>(per_token));
    std::printf("\n");
    return 0;
  };
}

}  // namespace mambacpp::cli
