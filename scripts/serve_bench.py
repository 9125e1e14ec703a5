#!/usr/bin/env python3
r"""Benchmarks of `mambacpp serve` (issue 12, "What it must show"), Python 3 standard library only.

Each part starts its own server (`mambacpp serve`) on 127.0.0.1 at a free port, waits for /health,
talks HTTP to it (POST /v1/completions with token-id prompts, streamed, `return_tokens`), stops it
with SIGTERM and checks that it exits 0. Results are printed and, with --json, appended as JSON lines.

  make-model   write a random-weight checkpoint of the `mambacpp bench` mamba2 shape (d_model 768,
               24 layers, d_state 128, head_dim 64, vocab 50277 = 129.0 M parameters) by one
               `mambacpp train` step (the weights are the initialization plus one AdamW step)
  multiturn    N turns of a growing conversation: TTFT of every turn with the prefix-state cache on,
               then the same conversation with --cache-mib 0; checks the replies are the same
  concurrency  total decode tokens/s against concurrent streams (server --parallel = streams)
  load         R requests at concurrency C, random prompt/output lengths, a fraction cancelled
               mid-stream (the client closes the connection); errors, metrics, VmRSS idle/after

Examples (docs/server_bench.md has the runs):
  scripts/serve_bench.py make-model /tmp/sb/bench-mamba2
  scripts/serve_bench.py multiturn -m /tmp/sb/bench-mamba2 --turns 10 --user-tokens 400 --reply-tokens 32
  scripts/serve_bench.py concurrency -m /tmp/sb/bench-mamba2 --streams 1 8 32 --prompt-tokens 16 --gen-tokens 64
  scripts/serve_bench.py load -m /tmp/sb/bench-mamba2 --requests 100 --rounds 2 --concurrency 16 --parallel 16 \
      --max-prompt 128 --max-gen 48
  scripts/serve_bench.py load -m ../shared/fixtures/ssm-mamba2 --requests 1000 --concurrency 64 --parallel 64 \
      --max-prompt 1024 --max-gen 256
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.path.join(ROOT, "build", "release", "bin", "mambacpp")


def log(*a):
    print(*a, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vocab_of(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    return int(cfg["vocab_size"])


def rss_kib(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


class Server:
    def __init__(self, args, extra, tag):
        self.port = free_port()
        self.log_path = os.path.join(args.log_dir, "serve-%s-%d.log" % (tag, self.port))
        cmd = [args.bin, "serve", "-m", args.model, "--host", "127.0.0.1", "--port", str(self.port),
               "-t", str(args.threads)] + [str(x) for x in extra] + args.server_args.split()
        self.cmd = cmd
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", "passive")  # the cores are shared (docs/benchmarks.md)
        self.logf = open(self.log_path, "w")
        log("$ OMP_WAIT_POLICY=%s %s" % (env["OMP_WAIT_POLICY"], " ".join(cmd)))
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited %d, see %s" % (self.proc.returncode, self.log_path))
            try:
                st, body = self.get("/health", timeout=2)
                if st == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("server not healthy after 300 s")
            time.sleep(0.1)

    def get(self, path, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def metrics(self):
        st, text = self.get("/metrics")
        m = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            k, _, v = line.rpartition(" ")
            try:
                m[k] = float(v)
            except ValueError:
                pass
        return m

    def rss(self):
        return rss_kib(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.logf.close()
        return rc


def stream_completion(port, body, cancel_after=None, timeout=900):
    """POST /v1/completions with stream: true. Returns a dict: status, t_send, t_first, t_end,
    chunks [(t, n_tokens)], tokens (ids), finish, usage, done ([DONE] seen), error, cancelled."""
    body = dict(body)
    body["stream"] = True
    body["return_tokens"] = True
    body["stream_options"] = {"include_usage": True}
    res = {"status": None, "chunks": [], "tokens": [], "finish": None, "usage": None, "done": False,
           "error": None, "cancelled": False, "t_first": None}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = json.dumps(body)
    res["t_send"] = time.perf_counter()
    try:
        conn.request("POST", "/v1/completions", body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        res["status"] = resp.status
        if resp.status != 200:
            res["error"] = "HTTP %d: %s" % (resp.status, resp.read()[:300].decode(errors="replace"))
            return res
        n_tok_chunks = 0
        while True:
            line = resp.readline()
            if not line:
                if not res["done"]:
                    res["error"] = "stream ended without [DONE]"
                break
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            payload = line[6:]
            if payload == b"[DONE]":
                res["done"] = True
                continue
            obj = json.loads(payload)
            if "error" in obj:
                res["error"] = "SSE error: %s" % obj["error"].get("message")
                continue
            if obj.get("usage"):
                res["usage"] = obj["usage"]
            for ch in obj.get("choices", []):
                ids = ch.get("token_ids") or []
                if ids:
                    t = time.perf_counter()
                    if res["t_first"] is None:
                        res["t_first"] = t
                    res["chunks"].append((t, len(ids)))
                    res["tokens"].extend(ids)
                    n_tok_chunks += 1
                if ch.get("finish_reason"):
                    res["finish"] = ch["finish_reason"]
            if cancel_after is not None and n_tok_chunks >= cancel_after:
                # hang up mid-stream: the server sees the failed write and frees the slot
                res["cancelled"] = True
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                break
    except Exception as e:  # noqa: BLE001 - every failure is a counted error
        res["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        res["t_end"] = time.perf_counter()
        conn.close()
    return res


# ----------------------------------------------------------------------------------------------

def cmd_make_model(args):
    tmp = args.out.rstrip("/") + ".train"
    cmd = [args.bin, "train", "--task", "mqar", "--mqar-vocab", "50277", "--layer", "Mamba2",
           "--d-model", str(args.d_model), "--n-layer", str(args.n_layer), "--d-state", "128", "--headdim", "64",
           "--expand", "2", "--length", "64", "--batch", "1", "--steps", "1", "--warmup", "0", "--eval-batches", "1",
           "--checkpoint-dir", tmp, "-t", str(args.threads)] + args.train_args.split()
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    step = os.path.join(tmp, sorted(d for d in os.listdir(tmp) if d.startswith("step_"))[-1])
    os.makedirs(args.out, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(step, f), os.path.join(args.out, f))
    shutil.rmtree(tmp)
    log("wrote %s" % args.out)


def emit(args, rec):
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(rec) + "\n")


def cmd_multiturn(args):
    vocab = vocab_of(args.model)
    out = {"part": "multiturn", "model": args.model, "turns": args.turns, "user_tokens": args.user_tokens,
           "reply_tokens": args.reply_tokens, "runs": {}}
    replies = {}
    for label, cache_mib in (("cache", args.cache_mib), ("nocache", 0)):
        srv = Server(args, ["--parallel", "1", "--cache-mib", cache_mib, "--prefill-chunk", args.prefill_chunk,
                            "--cache-every", args.cache_every], "multiturn-" + label)
        try:
            rng = random.Random(args.seed)
            # warm-up: a short unrelated prompt (first allocations, thread pool)
            stream_completion(srv.port, {"prompt": [rng.randrange(vocab) for _ in range(32)], "max_tokens": 4,
                                         "temperature": 0, "ignore_eos": True})
            rng = random.Random(args.seed + 1)
            history, rows, reps = [], [], []
            for turn in range(1, args.turns + 1):
                prompt = history + [rng.randrange(vocab) for _ in range(args.user_tokens)]
                r = stream_completion(srv.port, {"prompt": prompt, "max_tokens": args.reply_tokens,
                                                 "temperature": 0, "ignore_eos": True})
                if r["error"] or r["t_first"] is None:
                    raise RuntimeError("turn %d: %s" % (turn, r["error"]))
                ttft = r["t_first"] - r["t_send"]
                cached = (r["usage"] or {}).get("prompt_tokens_details", {}).get("cached_tokens")
                rows.append({"turn": turn, "prompt_tokens": len(prompt), "cached_tokens": cached,
                             "ttft_s": ttft, "total_s": r["t_end"] - r["t_send"]})
                log("  %-7s turn %2d: prompt %6d tokens, cached %6s, TTFT %8.3f s, request %8.3f s"
                    % (label, turn, len(prompt), cached, ttft, r["t_end"] - r["t_send"]))
                reps.append(r["tokens"])
                history = prompt + r["tokens"]
            out["runs"][label] = {"cache_mib": cache_mib, "turns": rows, "rss_kib": srv.rss(),
                                  "cache_bytes": srv.metrics().get("mambacpp_cache_bytes")}
            replies[label] = reps
        finally:
            out["runs"].setdefault(label, {})["exit_code"] = srv.stop()
    out["replies_equal"] = replies.get("cache") == replies.get("nocache")
    out["final_tokens"] = out["runs"]["cache"]["turns"][-1]["prompt_tokens"] + args.reply_tokens
    for label in ("cache", "nocache"):
        t = out["runs"][label]["turns"]
        log("%-7s: TTFT turn 1 %.3f s, turn %d %.3f s, ratio %.2f; sum of TTFTs %.2f s; exit %s"
            % (label, t[0]["ttft_s"], len(t), t[-1]["ttft_s"], t[-1]["ttft_s"] / t[0]["ttft_s"],
               sum(x["ttft_s"] for x in t), out["runs"][label]["exit_code"]))
    log("replies identical with and without the cache: %s; conversation %d tokens"
        % (out["replies_equal"], out["final_tokens"]))
    emit(args, out)


def run_concurrent(port, bodies, cancel_after=None, concurrency=None):
    """Runs every body as a stream, `concurrency` at a time (default: all at once)."""
    results = [None] * len(bodies)
    idx = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = idx[0]
                idx[0] += 1
            if i >= len(bodies):
                return
            results[i] = stream_completion(port, bodies[i], cancel_after[i] if cancel_after else None)

    n = concurrency or len(bodies)
    ts = [threading.Thread(target=worker, daemon=True) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results


def cmd_concurrency(args):
    vocab = vocab_of(args.model)
    for n in args.streams:
        srv = Server(args, ["--parallel", n, "--queue", max(64, n), "--cache-mib", args.cache_mib], "conc%d" % n)
        try:
            rng = random.Random(args.seed + n)
            stream_completion(srv.port, {"prompt": [rng.randrange(vocab) for _ in range(args.prompt_tokens)],
                                         "max_tokens": 4, "ignore_eos": True, "seed": 1})
            bodies = [{"prompt": [rng.randrange(vocab) for _ in range(args.prompt_tokens)],
                       "max_tokens": args.gen_tokens, "ignore_eos": True, "seed": i} for i in range(n)]
            if args.temperature is not None:
                for b in bodies:
                    b["temperature"] = args.temperature
            t0 = time.perf_counter()
            rs = run_concurrent(srv.port, bodies)
            wall = time.perf_counter() - t0
            errs = [r["error"] for r in rs if r["error"]]
            toks = sum(len(r["tokens"]) for r in rs)
            firsts = [r["t_first"] for r in rs if r["t_first"]]
            lasts = [r["chunks"][-1][0] for r in rs if r["chunks"]]
            span = max(lasts) - min(firsts)
            # decode tokens: every token after a stream's first one, over the span in which any decodes
            dec_toks = sum(max(0, len(r["tokens"]) - 1) for r in rs)
            busy = sum(r["chunks"][-1][0] - r["t_first"] for r in rs if r["chunks"])
            # the window in which all n streams are decoding (empty when the first ends before the last starts)
            w0, w1 = max(firsts), min(lasts)
            win_toks = sum(k for r in rs for (t, k) in r["chunks"] if w0 < t <= w1)
            ttfts = sorted(r["t_first"] - r["t_send"] for r in rs if r["t_first"])
            per_stream = sorted((len(r["tokens"]) - 1) / (r["chunks"][-1][0] - r["t_first"])
                                for r in rs if len(r["chunks"]) > 1 and r["chunks"][-1][0] > r["t_first"])
            rec = {"part": "concurrency", "model": args.model, "streams": n, "prompt_tokens": args.prompt_tokens,
                   "gen_tokens": args.gen_tokens, "errors": errs, "completion_tokens": toks, "wall_s": wall,
                   "end_to_end_tok_s": toks / wall, "decode_tok_s": dec_toks / span if span > 0 else None,
                   "mean_decoding_streams": busy / span if span > 0 else None,
                   "all_decoding_window_s": max(0.0, w1 - w0),
                   "all_decoding_tok_s": win_toks / (w1 - w0) if w1 - w0 > 0.5 else None,
                   "ttft_median_s": ttfts[len(ttfts) // 2], "ttft_max_s": ttfts[-1],
                   "per_stream_tok_s_median": per_stream[len(per_stream) // 2] if per_stream else None,
                   "rss_kib": srv.rss()}
            log("streams %4d: %d tokens in %.2f s: end-to-end %.1f tok/s, decode %.1f tok/s (mean %.1f streams "
                "decoding), all-%d window %.2f s at %s tok/s, per stream median %.2f tok/s, TTFT median %.3f s "
                "max %.3f s, errors %d"
                % (n, toks, wall, rec["end_to_end_tok_s"], rec["decode_tok_s"] or 0, rec["mean_decoding_streams"] or 0,
                   n, rec["all_decoding_window_s"],
                   "%.1f" % rec["all_decoding_tok_s"] if rec["all_decoding_tok_s"] else "n/a",
                   rec["per_stream_tok_s_median"] or 0, rec["ttft_median_s"], rec["ttft_max_s"], len(errs)))
            for e in errs[:5]:
                log("   error: " + e)
        finally:
            rec_rc = srv.stop()
        rec["exit_code"] = rec_rc
        emit(args, rec)


def cmd_load(args):
    vocab = vocab_of(args.model)
    srv = Server(args, ["--parallel", args.parallel, "--queue", args.queue, "--cache-mib", args.cache_mib], "load")
    out = {"part": "load", "model": args.model, "requests": args.requests, "concurrency": args.concurrency,
           "parallel": args.parallel, "rounds": []}
    try:
        time.sleep(1)
        out["rss_idle_start"] = srv.rss()
        log("idle VmRSS %d KiB (HWM %d)" % (out["rss_idle_start"]["VmRSS"], out["rss_idle_start"]["VmHWM"]))
        for rnd in range(args.rounds):
            rng = random.Random(args.seed + 1000 * rnd)
            bodies, cancel = [], []
            for i in range(args.requests):
                plen = rng.randint(args.min_prompt, args.max_prompt)
                glen = rng.randint(args.min_gen, args.max_gen)
                b = {"prompt": [rng.randrange(vocab) for _ in range(plen)], "max_tokens": glen,
                     "ignore_eos": True, "seed": i, "temperature": rng.choice([0, 0.7, 1.0])}
                if rng.random() < 0.2 and bodies:  # some follow-ups that hit the prefix cache
                    prev = rng.choice(bodies)["prompt"]
                    b["prompt"] = prev + b["prompt"][: max(1, plen // 4)]
                bodies.append(b)
                # cancel after 1..glen/2 token chunks (a slow reader gets several tokens per chunk)
                cancel.append(rng.randint(1, max(1, glen // 2)) if rng.random() < args.cancel_frac else None)
            m0 = srv.metrics()
            t0 = time.perf_counter()
            rs = run_concurrent(srv.port, bodies, cancel, args.concurrency)
            wall = time.perf_counter() - t0
            time.sleep(2)  # cancelled slots are freed at the next scheduler step
            m1 = srv.metrics()
            n_cancel = sum(1 for r in rs if r["cancelled"])
            errors = []
            for b, r in zip(bodies, rs):
                if r["cancelled"]:
                    continue
                if r["error"]:
                    errors.append(r["error"])
                elif not r["done"] or r["finish"] != "length" or len(r["tokens"]) != b["max_tokens"]:
                    errors.append("bad stream: done %s finish %s tokens %d/%d" % (r["done"], r["finish"],
                                                                                 len(r["tokens"]), b["max_tokens"]))
                elif (r["usage"] or {}).get("completion_tokens") != b["max_tokens"]:
                    errors.append("usage mismatch %s" % r["usage"])
            d = lambda k: m1.get(k, 0) - m0.get(k, 0)  # noqa: E731
            ttfts = sorted(r["t_first"] - r["t_send"] for r in rs if r["t_first"])
            rec = {"round": rnd + 1, "wall_s": wall, "cancelled_by_client": n_cancel, "errors": len(errors),
                   "error_samples": errors[:10],
                   "completion_tokens_received": sum(len(r["tokens"]) for r in rs),
                   "ttft_median_s": ttfts[len(ttfts) // 2], "ttft_p99_s": ttfts[int(len(ttfts) * 0.99)],
                   "metrics_delta": {k: d(k) for k in (
                       "mambacpp_requests_finished_total", "mambacpp_requests_cancelled_total",
                       "mambacpp_requests_rejected_total", "mambacpp_cache_hits_total",
                       "mambacpp_cache_misses_total", "mambacpp_prompt_tokens_cached_total",
                       "mambacpp_completion_tokens_total")},
                   "gauges_after": {k: m1.get(k) for k in ("mambacpp_active_slots", "mambacpp_queue_depth",
                                                           "mambacpp_cache_entries", "mambacpp_cache_bytes")},
                   "rss_after": srv.rss()}
            out["rounds"].append(rec)
            log("round %d: %d requests in %.1f s, cancelled by client %d, errors %d, server finished %d cancelled %d "
                "rejected %d, cache hits %d; after: active slots %s queue %s cache %s entries %.1f MiB; "
                "VmRSS %d KiB (HWM %d)"
                % (rnd + 1, len(rs), wall, n_cancel, len(errors),
                   rec["metrics_delta"]["mambacpp_requests_finished_total"],
                   rec["metrics_delta"]["mambacpp_requests_cancelled_total"],
                   rec["metrics_delta"]["mambacpp_requests_rejected_total"],
                   rec["metrics_delta"]["mambacpp_cache_hits_total"],
                   rec["gauges_after"]["mambacpp_active_slots"], rec["gauges_after"]["mambacpp_queue_depth"],
                   rec["gauges_after"]["mambacpp_cache_entries"], (rec["gauges_after"]["mambacpp_cache_bytes"] or 0) / 2**20,
                   rec["rss_after"]["VmRSS"], rec["rss_after"]["VmHWM"]))
            for e in errors[:10]:
                log("   error: " + e)
    finally:
        out["exit_code"] = srv.stop()
        log("server exit code %d (SIGTERM)" % out["exit_code"])
    emit(args, out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=DEFAULT_BIN)
    p.add_argument("-t", "--threads", type=int, default=2)
    p.add_argument("--json", help="append JSON lines here")
    p.add_argument("--log-dir", default="/tmp", help="server logs (one line per request)")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--server-args", default="", help="more serve flags, e.g. '--device cuda --dtype bf16'")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("make-model")
    s.add_argument("out")
    s.add_argument("--d-model", type=int, default=768, help="2048 with --n-layer 48: the 1.3B-class shape")
    s.add_argument("--n-layer", type=int, default=24)
    s.add_argument("--train-args", default="", help="more train flags, e.g. '--device cuda'")

    s = sub.add_parser("multiturn")
    s.add_argument("-m", "--model", required=True)
    s.add_argument("--turns", type=int, default=10)
    s.add_argument("--user-tokens", type=int, default=3200)
    s.add_argument("--reply-tokens", type=int, default=32)
    s.add_argument("--cache-mib", type=int, default=256)
    s.add_argument("--cache-every", type=int, default=2048)
    s.add_argument("--prefill-chunk", type=int, default=512)

    s = sub.add_parser("concurrency")
    s.add_argument("-m", "--model", required=True)
    s.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32, 128])
    s.add_argument("--prompt-tokens", type=int, default=16)
    s.add_argument("--gen-tokens", type=int, default=32)
    s.add_argument("--temperature", type=float, help="0: greedy, as bench --generate (default: the server's, 1)")
    s.add_argument("--cache-mib", type=int, default=256)

    s = sub.add_parser("load")
    s.add_argument("-m", "--model", required=True)
    s.add_argument("--requests", type=int, default=200)
    s.add_argument("--concurrency", type=int, default=16)
    s.add_argument("--parallel", type=int, default=16)
    s.add_argument("--queue", type=int, default=64)
    s.add_argument("--cache-mib", type=int, default=256)
    s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--cancel-frac", type=float, default=0.1)
    s.add_argument("--min-prompt", type=int, default=4)
    s.add_argument("--max-prompt", type=int, default=256)
    s.add_argument("--min-gen", type=int, default=4)
    s.add_argument("--max-gen", type=int, default=64)

    args = p.parse_args()
    if args.cmd != "make-model":
        args.model = os.path.abspath(args.model)
    {"make-model": cmd_make_model, "multiturn": cmd_multiturn, "concurrency": cmd_concurrency,
     "load": cmd_load}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
