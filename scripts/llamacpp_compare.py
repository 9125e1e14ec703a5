#!/usr/bin/env python3
"""mambacpp vs llama.cpp on the same GGUF files (scripts/llamacpp_compare.sh drives it).

  llamacpp_compare.py make-model DIR KIND [D_MODEL N_LAYER]
      A random-weight HF checkpoint (config.json + model.safetensors; no torch needed) of the
      130M shape: KIND mamba2 (state-spaces/mamba2-130m: d 768, 24 layers, state 128, vocab 50288)
      or mamba1 (mamba-130m: state 16, vocab 50280), or granite4h (a hybrid: Granite-4.0-H without
      experts, Mamba-2 layers with attention every sixth and a gated MLP of 512 after each; llama.cpp's
      `granitehybrid`). Values N(0, 0.02)-like from a fixed seed.
  llamacpp_compare.py bench MAMBACPP LLAMA_BENCH OUT_JSON THREADS MODEL:TYPE=F.gguf ...
      For each thread count and GGUF: llama-bench -p 512 -n 128 -r 3 -t T (its medians of the
      samples), and mambacpp generate with a 512-token prompt and 128 generated tokens, 3 runs
      (median of its prefill / decode tok/s). Each process pinned to T distinct physical cores
      first (sched_setaffinity), OMP_NUM_THREADS=T; peak RSS of each process from wait4.
  llamacpp_compare.py table OUT_JSON DOC
      The results as a markdown table, written into DOC between the lines
      "<!-- llamacpp_compare begin -->" and "<!-- llamacpp_compare end -->" (appended when absent).
"""
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import time


def make_model(out, kind, d=768, n_layer=24):
    os.makedirs(out, exist_ok=True)
    d, n_layer = int(d), int(n_layer)
    inner, k = 2 * d, 4
    tensors = []
    if kind == "mamba2":
        n, hd, v = 128, 64, 50288
        h = inner // hd
        cfg = dict(model_type="mamba2", architectures=["Mamba2ForCausalLM"], hidden_size=d, num_hidden_layers=n_layer,
                   vocab_size=v, state_size=n, expand=2, head_dim=hd, num_heads=h, n_groups=1, conv_kernel=k,
                   chunk_size=256, tie_word_embeddings=True, layer_norm_epsilon=1e-5, use_bias=False,
                   use_conv_bias=True)
        conv = inner + 2 * n
        for l in range(n_layer):
            p = f"backbone.layers.{l}."
            tensors += [(p + "norm.weight", [d], "one"), (p + "mixer.in_proj.weight", [2 * inner + 2 * n + h, d], "w"),
                        (p + "mixer.conv1d.weight", [conv, 1, k], "w"), (p + "mixer.conv1d.bias", [conv], "w"),
                        (p + "mixer.dt_bias", [h], "w"), (p + "mixer.A_log", [h], "alog"), (p + "mixer.D", [h], "one"),
                        (p + "mixer.norm.weight", [inner], "one"), (p + "mixer.out_proj.weight", [d, inner], "w")]
    elif kind == "granite4h":
        # Granite-4.0-H without experts (its Micro form): Mamba-2 layers with an attention layer every
        # sixth (NoPE, as Granite-4.0-H), each followed by the shared gated MLP; µP multipliers of
        # the Granite-4.0-H configs. llama.cpp: `granitehybrid`.
        n, hd, v, mlp, heads, kv = 128, 64, 50288, 512, d // 64, max(1, d // 256)
        h = inner // hd
        kinds = ["full_attention" if l % 6 == 5 else "linear_attention" for l in range(n_layer)]
        cfg = dict(model_type="granitemoehybrid", architectures=["GraniteMoeHybridForCausalLM"], hidden_size=d,
                   num_hidden_layers=n_layer, vocab_size=v, layer_types=kinds, mamba_d_state=n, mamba_expand=2,
                   mamba_d_head=hd, mamba_n_heads=h, mamba_n_groups=1, mamba_d_conv=k, mamba_chunk_size=256,
                   mamba_conv_bias=True, mamba_proj_bias=False, num_attention_heads=heads,
                   num_key_value_heads=kv, attention_bias=False, position_embedding_type=None,
                   num_local_experts=0, shared_intermediate_size=mlp, intermediate_size=mlp, hidden_act="silu",
                   embedding_multiplier=12.0, attention_multiplier=1.0 / hd, residual_multiplier=0.22,
                   logits_scaling=6.0, rms_norm_eps=1e-5, tie_word_embeddings=True, pad_token_id=0,
                   bos_token_id=1, eos_token_id=2)
        conv = inner + 2 * n
        for l in range(n_layer):
            p = f"model.layers.{l}."
            tensors += [(p + "input_layernorm.weight", [d], "one"), (p + "post_attention_layernorm.weight", [d], "one"),
                        (p + "shared_mlp.input_linear.weight", [2 * mlp, d], "w"),
                        (p + "shared_mlp.output_linear.weight", [d, mlp], "w")]
            if kinds[l] == "full_attention":
                tensors += [(p + "self_attn.q_proj.weight", [heads * hd, d], "w"),
                            (p + "self_attn.k_proj.weight", [kv * hd, d], "w"),
                            (p + "self_attn.v_proj.weight", [kv * hd, d], "w"),
                            (p + "self_attn.o_proj.weight", [d, heads * hd], "w")]
            else:
                q = p + "mamba."
                tensors += [(q + "in_proj.weight", [2 * inner + 2 * n + h, d], "w"), (q + "conv1d.weight", [conv, 1, k], "w"),
                            (q + "conv1d.bias", [conv], "w"), (q + "dt_bias", [h], "w"), (q + "A_log", [h], "alog"),
                            (q + "D", [h], "one"), (q + "norm.weight", [inner], "one"),
                            (q + "out_proj.weight", [d, inner], "w")]
        tensors = [("model.embed_tokens.weight", [v, d], "w")] + tensors + [("model.norm.weight", [d], "one")]
    else:
        n, v, r = 16, 50280, (d + 15) // 16
        cfg = dict(model_type="mamba", architectures=["MambaForCausalLM"], hidden_size=d, num_hidden_layers=n_layer,
                   vocab_size=v, state_size=n, expand=2, conv_kernel=k, intermediate_size=inner, time_step_rank=r,
                   tie_word_embeddings=True, layer_norm_epsilon=1e-5, use_bias=False, use_conv_bias=True)
        for l in range(n_layer):
            p = f"backbone.layers.{l}."
            tensors += [(p + "norm.weight", [d], "one"), (p + "mixer.in_proj.weight", [2 * inner, d], "w"),
                        (p + "mixer.conv1d.weight", [inner, 1, k], "w"), (p + "mixer.conv1d.bias", [inner], "w"),
                        (p + "mixer.x_proj.weight", [r + 2 * n, inner], "w"), (p + "mixer.dt_proj.weight", [inner, r], "w"),
                        (p + "mixer.dt_proj.bias", [inner], "w"), (p + "mixer.A_log", [inner, n], "alog"),
                        (p + "mixer.D", [inner], "one"), (p + "mixer.out_proj.weight", [d, inner], "w")]
    if kind != "granite4h":
        tensors = [("backbone.embeddings.weight", [v, d], "w")] + tensors + [("backbone.norm_f.weight", [d], "one")]
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    rng = random.Random(1234)
    pats = {"w": struct.pack("<8191f", *[rng.gauss(0, 0.02) for _ in range(8191)]),
            "one": struct.pack("<8191f", *[1.0 + rng.gauss(0, 0.1) for _ in range(8191)]),
            "alog": struct.pack("<8191f", *[rng.uniform(0.0, 2.7) for _ in range(8191)])}
    header, off = {}, 0
    for name, shape, _ in tensors:
        count = 1
        for s in shape:
            count *= s
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + 4 * count]}
        off += 4 * count
    hj = json.dumps(header).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    tmp = os.path.join(out, "model.safetensors.tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj)
        for name, shape, kind_ in tensors:
            nbytes = header[name]["data_offsets"][1] - header[name]["data_offsets"][0]
            pat = pats[kind_]
            full = pat * (nbytes // len(pat))
            f.write(full + pat[: nbytes - len(full)])
    os.replace(tmp, os.path.join(out, "model.safetensors"))
    print(f"{out}: {kind} d_model {d}, {n_layer} layers, {off / 2**20:.1f} MiB f32")


def topo(c):
    base = f"/sys/devices/system/cpu/cpu{c}/topology/"
    try:
        return (open(base + "physical_package_id").read().strip(), open(base + "core_id").read().strip())
    except OSError:
        return ("0", str(c))


def pick_cpus(n):
    cpus = sorted(os.sched_getaffinity(0))
    seen, first, rest = set(), [], []
    for c in cpus:
        key = topo(c)
        (rest if key in seen else first).append(c)
        seen.add(key)
    return (first + rest)[:n]


def run(cmd, cpus, env, timeout=900):
    t0 = time.time()
    with open("/tmp/llcmp_stdout", "w") as fo, open("/tmp/llcmp_stderr", "w") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, preexec_fn=lambda: os.sched_setaffinity(0, cpus))
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > t0 + timeout:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
    out, err = open("/tmp/llcmp_stdout").read(), open("/tmp/llcmp_stderr").read()
    return os.waitstatus_to_exitcode(status), out, err, ru.ru_maxrss / 1024.0


def bench(mambacpp, llama_bench, out_json, threads, files):
    results = json.load(open(out_json)) if os.path.exists(out_json) else []

    def record(**kw):
        results.append(kw)
        json.dump(results, open(out_json + ".tmp", "w"), indent=1)
        os.replace(out_json + ".tmp", out_json)
        print(f"{kw['model']:8s} {kw['type']:5s} {kw['engine']:9s} t={kw['threads']:2d} {kw['test']:6s} "
              f"{kw['median_ts']:9.2f} tok/s  samples {kw['samples_ts']}  peak RSS {kw['peak_rss_mib']:.0f} MiB",
              flush=True)

    ids = ",".join(str((i * 7919 + 13) % 50277) for i in range(512))
    for t in [int(x) for x in threads.split(",")]:
        cpus = pick_cpus(t)
        env = dict(os.environ, OMP_NUM_THREADS=str(t))
        for spec in files:
            label, path = spec.split("=", 1)
            model, wtype = label.split(":")
            rc, out, err, rss = run([llama_bench, "-m", path, "-p", "512", "-n", "128", "-t", str(t), "-r", "3",
                                     "-o", "json"], cpus, env)
            if rc != 0:
                print(f"llama-bench {label} t={t} failed rc={rc}: {err[-800:]}", flush=True)
            else:
                for j in json.loads(out):
                    test = f"pp{j['n_prompt']}" if j.get("n_gen", 0) == 0 else f"tg{j['n_gen']}"
                    record(model=model, type=wtype, engine="llama.cpp", threads=t, test=test,
                           samples_ts=[round(x, 2) for x in j["samples_ts"]], median_ts=statistics.median(j["samples_ts"]),
                           peak_rss_mib=rss, cpu=j.get("cpu_info"), commit=j.get("build_commit"))
            pp, tg, rsss = [], [], []
            for _ in range(3):
                rc, out, err, rss = run([mambacpp, "generate", "-m", path, "--prompt-ids", ids, "-n", "128", "--temp", "0",
                                         "--ignore-eos", "--print-ids", "-t", str(t)], cpus, env)
                if rc != 0:
                    print(f"mambacpp {label} t={t} failed rc={rc}: {err[-800:]}", flush=True)
                    break
                for line in err.splitlines():
                    if line.startswith("prompt:"):
                        pp.append(float(line.split("(")[1].split()[0]))
                    if line.startswith("generated:"):
                        tg.append(float(line.split("(")[1].split()[0]))
                rsss.append(rss)
            if pp and tg:
                for test, s in (("pp512", pp), ("tg128", tg)):
                    record(model=model, type=wtype, engine="mambacpp", threads=t, test=test, samples_ts=s,
                           median_ts=statistics.median(s), peak_rss_mib=max(rsss))


def table(out_json, doc):
    rs = json.load(open(out_json))
    key = {}
    for r in rs:
        key[(r["model"], r["type"], r["threads"], r["test"], r["engine"])] = r
    rows = sorted({(r["model"], r["type"], r["threads"], r["test"]) for r in rs},
                  key=lambda k: (k[0], k[2], ["f32", "bf16", "q8_0", "q4_0", "q4_k"].index(k[1]) if k[1] in
                                 ["f32", "bf16", "q8_0", "q4_0", "q4_k"] else 9, k[3]))
    cpu = next((r.get("cpu") for r in rs if r.get("cpu")), "?")
    lines = ["<!-- llamacpp_compare begin -->",
             f"Same GGUF files for both engines (`mambacpp quantize` of one random-weight checkpoint), "
             f"`scripts/llamacpp_compare.sh`, {time.strftime('%Y-%m-%d')}, CPU: {cpu}. llama.cpp: "
             "llama-bench -p 512 -n 128 -r 3 (median of its samples); mambacpp: generate, 512-token prompt + 128 "
             "tokens, median of 3 runs. Peak RSS per process (wait4).", "",
             "| model | weights | threads | test | mambacpp tok/s | llama.cpp tok/s | ratio | mambacpp peak MiB | "
             "llama.cpp peak MiB |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for m, w, t, test in rows:
        a, b = key.get((m, w, t, test, "mambacpp")), key.get((m, w, t, test, "llama.cpp"))
        fa = f"{a['median_ts']:.1f}" if a else "—"
        fb = f"{b['median_ts']:.1f}" if b else "—"
        ratio = f"{a['median_ts'] / b['median_ts']:.2f}" if a and b and b["median_ts"] > 0 else "—"
        ra = f"{a['peak_rss_mib']:.0f}" if a else "—"
        rb = f"{b['peak_rss_mib']:.0f}" if b else "—"
        lines.append(f"| {m} | {w} | {t} | {test} | {fa} | {fb} | {ratio} | {ra} | {rb} |")
    lines.append("<!-- llamacpp_compare end -->")
    block = "\n".join(lines) + "\n"
    text = open(doc).read() if os.path.exists(doc) else ""
    begin, end = "<!-- llamacpp_compare begin -->", "<!-- llamacpp_compare end -->"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) + 1:]
    else:
        text += "\n## CPU: mambacpp against llama.cpp, same GGUF (scripts/llamacpp_compare.sh)\n\n" + block
    with open(doc + ".tmp", "w") as f:
        f.write(text)
    os.replace(doc + ".tmp", doc)
    print(block)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("make-model", "bench", "table"):
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make-model":
        make_model(*args)
    elif cmd == "bench":
        bench(args[0], args[1], args[2], args[3], args[4:])
    else:
        table(*args)
