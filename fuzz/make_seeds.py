#!/usr/bin/env python3
"""Writes the small hand-made seed corpora of fuzz/seeds/<surface>/ (committed; rerun to refresh).

The fuzzers also start from the fixtures (scripts/fuzz.sh copies them), but those are large (a
tokenizer.json is 100-190 KB); these seeds are small versions of every structure, so that mutations
stay within a modest -max_len. State seeds come from `mambacpp_fuzz_replay --write-state-seeds`.
Usage: fuzz/make_seeds.py FIXTURES_DIR   (e.g. ../shared/fixtures)
"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
FIX = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "..", "shared", "fixtures")


def out(surface, name, data):
    d = os.path.join(ROOT, "seeds", surface)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# safetensors: header length, JSON header, data.
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


f32 = lambda *v: struct.pack("<%df" % len(v), *v)
out("safetensors", "two_f32", safetensors([("a", "F32", [2, 2], f32(1, 2, 3, 4)), ("b", "F32", [1], f32(5))]))
out("safetensors", "mixed", safetensors([("w", "BF16", [3], b"\x80\x3f" * 3), ("h", "F16", [2], b"\x00\x3c" * 2),
                                          ("i", "I64", [2], struct.pack("<2q", 1, -1)),
                                          ("n", "I32", [1, 1], struct.pack("<i", 7)), ("u", "U8", [4], b"abcd"),
                                          ("d", "F64", [1], struct.pack("<d", 1.5)),
                                          ("e", "F32", [0, 3], b"")], {"format": "pt"}))
out("safetensors", "empty", safetensors([]))

# gguf: "GGUF", version, counts, metadata (key, type, value), tensor infos, aligned data.
def gguf_str(v):
    b = v.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(metadata, tensors, alignment=32):
    """metadata: [(key, type, packed value)]; tensors: [(name, dims innermost first, ggml type, bytes)]."""
    h = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for k, t, v in metadata:
        h += gguf_str(k) + struct.pack("<I", t) + v
    off, data = 0, b""
    for name, dims, typ, payload in tensors:
        h += gguf_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        h += struct.pack("<IQ", typ, off)
        pad = (-len(payload)) % alignment
        data += payload + b"\0" * pad
        off += len(payload) + pad
    h += b"\0" * ((-len(h)) % alignment)
    return h + data


def u32(v):
    return struct.pack("<I", v)


def vocab_md(kind):
    """tokenizer.ggml.* of a 16-token vocabulary: gpt2 (byte-level BPE, merges) or llama (SentencePiece)."""
    if kind == "gpt2":
        toks = ["<|endoftext|>", "a", "b", "c", "\u0120", "ab", "\u0120a", "abc"] + ["x%d" % i for i in range(8)]
        types = [3] + [1] * 15
        extra = [("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, 3) + gguf_str("a b") + gguf_str("\u0120 a")
                  + gguf_str("ab c")), ("tokenizer.ggml.pre", 8, gguf_str("gpt2"))]
    else:
        toks = ["<unk>", "<s>", "</s>", "<0x41>", "\u2581", "a", "b", "\u2581a", "ab", "\u2581ab"] + ["y%d" % i for i in range(6)]
        types = [2, 3, 3, 6] + [1] * 12
        extra = [("tokenizer.ggml.add_space_prefix", 7, b"\x01")]
    md = [("tokenizer.ggml.model", 8, gguf_str(kind)),
          ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(toks)) + b"".join(gguf_str(t) for t in toks)),
          ("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, len(toks)) + b"".join(struct.pack("<f", -i) for i in range(len(toks)))),
          ("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, len(toks)) + b"".join(struct.pack("<i", t) for t in types)),
          ("tokenizer.ggml.eos_token_id", 4, u32(0 if kind == "gpt2" else 2)),
          ("tokenizer.chat_template", 8, gguf_str("{% for m in messages %}{{ m.content }}{% endfor %}"))]
    return md + extra


def mamba2_gguf(quantized, tok=None):
    """A 1-layer llama.cpp mamba2 model: d_model 32, d_inner 64, 2 heads, d_state 4, vocab 16."""
    d, di, h, n, k, vocab = 32, 64, 2, 4, 4, 16
    conv, in_proj = di + 2 * n, 2 * di + 2 * n + h
    md = [("general.architecture", 8, gguf_str("mamba2"))]
    for key, v in [("embedding_length", d), ("block_count", 1), ("ssm.conv_kernel", k), ("ssm.inner_size", di),
                   ("ssm.state_size", n), ("ssm.time_step_rank", h), ("ssm.group_count", 1)]:
        md.append(("mamba2." + key, 4, u32(v)))
    md.append(("mamba2.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)))
    if tok:
        md += vocab_md(tok)

    def mat(rows, cols):  # f32, or q8_0 blocks of scale 1/64 and small ints
        if not quantized:
            return 0, struct.pack("<%df" % (rows * cols), *[((i * 7) % 13 - 6) / 16 for i in range(rows * cols)])
        blk = struct.pack("<H", 0x2400) + bytes((i * 5) % 9 for i in range(32))
        return 8, blk * (rows * cols // 32)

    def vec(count, value):
        return struct.pack("<%df" % count, *([value] * count))

    ts = [("token_embd.weight", [d, vocab]) + mat(vocab, d), ("output_norm.weight", [d], 0, vec(d, 1.0)),
          ("blk.0.attn_norm.weight", [d], 0, vec(d, 1.0)), ("blk.0.ssm_in.weight", [d, in_proj]) + mat(in_proj, d),
          ("blk.0.ssm_conv1d.weight", [k, conv], 0, vec(k * conv, 0.25)),
          ("blk.0.ssm_conv1d.bias", [conv], 0, vec(conv, 0.0)), ("blk.0.ssm_dt.bias", [h], 0, vec(h, 0.5)),
          ("blk.0.ssm_a", [1, h], 0, vec(h, -1.0)), ("blk.0.ssm_d", [1, h], 0, vec(h, 1.0)),
          ("blk.0.ssm_norm.weight", [di, 1], 0, vec(di, 1.0)), ("blk.0.ssm_out.weight", [di, d]) + mat(d, di)]
    return gguf(md, [(t[0], t[1], t[2], t[3]) for t in ts])


out("gguf", "empty", gguf([], []))
out("gguf", "metadata", gguf([("general.alignment", 4, u32(64)), ("s", 8, gguf_str("x")),
                              ("arr", 9, struct.pack("<IQ", 5, 2) + struct.pack("<ii", 1, -1)),
                              ("strs", 9, struct.pack("<IQ", 8, 2) + gguf_str("a") + gguf_str("bc"))],
                             [("t", [32], 8, b"\0" * 34)], alignment=64))
out("gguf", "mamba2_f32", mamba2_gguf(False))
out("gguf", "mamba2_q8_0", mamba2_gguf(True))
out("gguf", "mamba2_vocab_gpt2", mamba2_gguf(False, "gpt2"))
out("gguf", "mamba2_vocab_llama", mamba2_gguf(True, "llama"))

out("safetensors", "scalar", safetensors([("s", "F32", [], f32(3.0))]))

# config.json: every fixture's, plus the families'.
for root, _, files in os.walk(FIX):
    if "config.json" in files and "tokenizers" not in root:
        name = os.path.relpath(root, FIX).replace("/", "_")
        with open(os.path.join(root, "config.json"), "rb") as f:
            out("config", name, f.read())
out("config", "defaults", "{}")
out("config", "hf_mamba_inf", '{"model_type": "mamba2", "hidden_size": 32, "num_hidden_layers": 1, '
    '"vocab_size": 50, "head_dim": 16, "time_step_limit": [0.0, Infinity]}')


# .npy: magic, version, header length, dict header padded to 64 bytes, data.
def npy(descr, shape, raw, version=1):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, repr(tuple(shape)))
    head_len_size = 2 if version == 1 else 4
    total = 6 + 2 + head_len_size + len(h) + 1
    h += " " * ((64 - total % 64) % 64) + "\n"
    size = struct.pack("<H" if version == 1 else "<I", len(h))
    return b"\x93NUMPY" + bytes([version, 0]) + size + h.encode("latin1") + raw


out("npy", "f4_2x2", npy("<f4", [2, 2], f32(1, 2, 3, 4)))
out("npy", "i8_3", npy("<i8", [3], struct.pack("<3q", 1, 2, 3)))
out("npy", "f8_v2", npy("<f8", [2], struct.pack("<2d", 1, 2), version=2))
out("npy", "u1_scalar", npy("|u1", [], b"\x07"))
out("npy", "i4_v3", npy("<i4", [1, 2], struct.pack("<2i", 4, 5), version=3))
out("npy", "f2_empty", npy("<f2", [0], b""))
with open(os.path.join(FIX, "ssm-mamba1", "input_ids.npy"), "rb") as f:
    out("npy", "fixture_input_ids", f.read())


# tokenizer.json: each fixture tokenizer cut down to its first tokens (and the merges among them).
def small_tokenizer(name, keep):
    with open(os.path.join(FIX, "tokenizers", name, "tokenizer.json"), encoding="utf-8") as f:
        j = json.load(f)
    m = j["model"]
    vocab = {t: i for t, i in m["vocab"].items() if i < keep}
    merges = []
    for mg in m["merges"]:
        left, right = mg.split(" ", 1) if isinstance(mg, str) else mg
        if left in vocab and right in vocab and left + right in vocab:
            merges.append(mg)
    m["vocab"], m["merges"] = vocab, merges[:40]
    j["added_tokens"] = [t for t in j.get("added_tokens", []) if t["id"] < keep or t["special"]][:6]
    return json.dumps(j, ensure_ascii=False, separators=(",", ":"))


for name, keep in [("bpe-gpt2-style", 300), ("bpe-llama3-style", 300), ("spm-metaspace", 300),
                   ("spm-legacy", 300)]:
    out("tokenizer_json", name, small_tokenizer(name, keep))

# tokenize: byte 0 picks the tokenizer (0-3 fixtures, 4 bytes), then text.
for i, text in enumerate(["Hello world!", " \u2581 caf\u00e9  <|endoftext|> 123", "<s>\n\n\t x</s>",
                          "\u4f60\u597d \U0001F600 \u00ff", "don't   stop 1234567"]):
    out("tokenize", "t%d" % i, bytes([i]) + text.encode())
out("tokenize", "bad_utf8", b"\x01ab\xff\xfe\xc3")

# chat templates: small ones (the model templates of tests/data/chat_templates are added by fuzz.sh).
out("chat_template", "loop", "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}")
out("chat_template", "macro", "{% macro f(x, y=2) %}{{ x ~ y }}{% endmacro %}{% set ns = namespace(a=0) %}"
    "{% for i in range(3) %}{% set ns.a = ns.a + i %}{{ f(i) }}{% endfor %}{{ ns.a }}{{ messages | length }}"
    "{{ tools | tojson }}{{ 'x' | upper }}{{ messages[0]['content'][:3] }}{% raw %}{{{% endraw %}")
out("chat_template", "errors", "{% if messages[0].role != 'system' %}{{ raise_exception('no') }}{% endif %}"
    "{{ bos_token }}{%- for m in messages if m.role == 'user' -%}{{ loop.index }}{{ m.content is string }}"
    "{%- endfor -%}{{ strftime_now('%Y') }}{{ 7 // 2 }}{{ 2 ** 3 }}{{ 'a' in 'abc' }}")

# requests: byte 0 even = /v1/completions, odd = /v1/chat/completions.
out("request", "completion", b"\x00" + json.dumps({"model": "m", "prompt": "Hello", "max_tokens": 8,
                                                    "temperature": 0.5, "top_p": 0.9, "stop": ["\n"],
                                                    "stream": True, "stream_options": {"include_usage": True},
                                                    "seed": 3, "top_k": 40, "logprobs": None}).encode())
out("request", "completion_ids", b"\x00" + json.dumps({"prompt": [1, 2, 3], "max_tokens": 2,
                                                        "repeat_penalty": 1.1, "ignore_eos": True}).encode())
out("request", "chat", b"\x01" + json.dumps({"model": "m", "messages": [
    {"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Again"}],
    "max_tokens": 4, "chat_template_kwargs": {"enable_thinking": False}, "frequency_penalty": 0.5}).encode())
out("request", "chat_tools", b"\x01" + json.dumps({"messages": [{"role": "user", "content": "x"}],
                                                    "tools": [{"type": "function", "function": {"name": "f"}}],
                                                    "n": 1, "presence_penalty": -1}).encode())
