"""The csipose pose network in PyTorch, built from the JSON line csipose's training bench prints
(`cargo bench -p csipose-train --bench throughput -- --json NAME`), and its timings:

  peer.py train   LINE.json OUT.json   training samples/s (batch, threads, AdamW, SmoothL1,
                                       mixup, dropout and EMA as in the line's options)
  peer.py latency LINE.json OUT.json M.onnx  batch-1 latency of ONNX Runtime (1 thread) on the
                                       network exported to ONNX
  peer.py table   RESULTS.jsonl        the side-by-side table with ratios and FMA-peak fractions

The module names are chosen so that PyTorch's parameter names and shapes equal csipose's
layout (`encoder.layers.0.self_attn.in_proj_weight`, `head.3.bias`, ...); `build` checks that.
"""

import json
import math
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)


def load_line(path):
    with open(path) as f:
        return json.loads(f.read())


def build(line):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    cfg = line["config"]
    a, s, p = cfg["antennas"], cfg["subcarriers"], cfg["packets"]
    d, heads, layers, g = cfg["d"], cfg["heads"], cfg["layers"], cfg["graph"]
    ffn, drop = line["ffn"], cfg["dropout"]
    joints, jemb, glayers = 17, line["joint_embed"], line["graph_layers"]

    class EncoderLayer(nn.Module):
        """Post-norm encoder layer, GELU (tanh): dropout on the attention output and the FFN."""

        def __init__(self):
            super().__init__()
            self.self_attn = nn.MultiheadAttention(d, heads, dropout=0.0, batch_first=True)
            self.linear1 = nn.Linear(d, ffn)
            self.linear2 = nn.Linear(ffn, d)
            self.norm1 = nn.LayerNorm(d)
            self.norm2 = nn.LayerNorm(d)
            self.drop = nn.Dropout(drop)

        def forward(self, x):
            att, _ = self.self_attn(x, x, x, need_weights=False)
            h = self.norm1(x + self.drop(att))
            f = self.linear2(self.drop(F.gelu(self.linear1(h), approximate="tanh")))
            return self.norm2(h + self.drop(f))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([EncoderLayer() for _ in range(layers)])

    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.score = nn.Linear(d, 1)

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.joint_embed = nn.Parameter(0.02 * torch.randn(joints, jemb))
            self.input = nn.Linear(d + jemb + 2, g)
            self.layers = nn.ModuleList([nn.Linear(g, g) for _ in range(glayers)])
            self.output = nn.Linear(g, 2)

    bones = [(0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (7, 9), (6, 8), (8, 10),
             (5, 11), (6, 12), (11, 13), (13, 15), (12, 14), (14, 16)]
    adj = torch.eye(joints)
    for i, j in bones:
        adj[i, j] = adj[j, i] = 1.0
    adj = adj / adj.sum(1, keepdim=True)

    class PoseNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(a * s, d)
            self.pos_embed = nn.Parameter(0.02 * torch.randn(p, d))
            self.encoder = Encoder()
            self.pool = Pool()
            self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(approximate="tanh"),
                                      nn.Dropout(drop), nn.Linear(d, 2 * joints))
            self.graph = Graph() if g is not None else None
            self.register_buffer("adj", adj)

        def forward(self, x):  # x [B, A, S, P], raw
            b = x.shape[0]
            flat = x.reshape(b, -1)
            mean = flat.mean(1, keepdim=True)
            std = flat.std(1, unbiased=False, keepdim=True)
            tok = ((flat - mean) / (std + 1e-6)).reshape(b, a * s, p).transpose(1, 2)
            h = self.embed(tok) + self.pos_embed
            for layer in self.encoder.layers:
                h = layer(h)
            w = torch.softmax(self.pool.score(h), dim=1)  # [B, P, 1]
            z = (w * h).sum(1)
            kp0 = torch.sigmoid(self.head(z))
            if self.graph is None:
                return kp0
            k2 = kp0.reshape(b, joints, 2)
            inp = torch.cat([z.unsqueeze(1).expand(b, joints, d),
                             self.graph.joint_embed.unsqueeze(0).expand(b, joints, jemb), k2], 2)
            f = torch.relu(self.graph.input(inp))
            for lin in self.graph.layers:
                f = torch.relu(lin(torch.matmul(self.adj, f)))
            return (k2 + 0.3 * torch.tanh(self.graph.output(f))).reshape(b, 2 * joints)

    net = PoseNet()
    ours = [(t["name"], list(t["shape"])) for t in line["tensors"]]
    theirs = [(n, list(v.shape)) for n, v in net.named_parameters()]
    if sorted(ours) != sorted(theirs):
        raise SystemExit(f"PyTorch network differs from csipose's layout:\n ours   {ours}\n theirs {theirs}")
    if sum(v.numel() for v in net.parameters()) != line["parameters"]:
        raise SystemExit("parameter count differs")
    return net


def train(line_path, out_path):
    import torch
    import torch.nn.functional as F

    line = load_line(line_path)
    threads, batch = line["threads"], line["batch"]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    opts, cfg = line["train"], line["config"]
    net = build(line)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=opts["lr"], weight_decay=opts["weight_decay"])
    ema = [p.detach().clone() for p in net.parameters()]
    n = 2048
    xs = torch.rand(n, cfg["antennas"], cfg["subcarriers"], cfg["packets"])
    ys = torch.rand(n, 34)
    alpha, beta, decay = opts["mixup_alpha"], opts["huber_beta"], opts["ema_decay"]
    mix = torch.distributions.Beta(alpha, alpha) if alpha > 0 else None

    def step(i):
        idx = torch.randint(0, n, (batch,))
        x, y = xs[idx], ys[idx]
        if mix is not None:
            lam = float(mix.sample())
            perm = torch.randperm(batch)
            x = lam * x + (1 - lam) * x[perm]
            y = lam * y + (1 - lam) * y[perm]
        loss = F.smooth_l1_loss(net(x), y, beta=beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, list(net.parameters()), 1.0 - decay)

    seconds = float(os.environ.get("CSIPOSE_BENCH_SECONDS", "3"))
    for i in range(3):
        step(i)
    rates, cpu0, wall0, total = [], time.process_time(), time.perf_counter(), 0
    for _ in range(5):
        t0, steps = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds / 5 or steps < 2:
            step(steps)
            steps += 1
        total += steps
        rates.append(steps * batch / (time.perf_counter() - t0))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    rates.sort()
    res = {"name": cfg["name"], "torch": torch.__version__, "threads": threads,
           "samples_per_s_median": rates[2], "samples_per_s_best": rates[4],
           "samples_per_cpu_s_times_threads": total * batch / cpu * threads if cpu > 0 else None,
           "cpu_per_wall": cpu / wall}
    with open(out_path, "w") as f:
        json.dump(res, f)


def latency(line_path, out_path, onnx_path):
    import numpy as np
    import onnxruntime as ort
    import torch

    line = load_line(line_path)
    cfg = line["config"]
    torch.manual_seed(0)
    net = build(line).eval()
    x = torch.randn(1, cfg["antennas"], cfg["subcarriers"], cfg["packets"])
    # The exporter knows the plain attention ops, not the fused inference kernel.
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad():
        want = net(x).numpy()
        torch.onnx.export(net, (x,), onnx_path, input_names=["csi"], output_names=["keypoints"],
                          dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    feed = {"csi": x.numpy()}
    got = sess.run(None, feed)[0]
    err = float(np.abs(got - want).max())
    if err > 1e-4:
        raise SystemExit(f"ONNX Runtime disagrees with PyTorch by {err}")
    iters = int(os.environ.get("CSIPOSE_PEER_ITERS", "2000"))
    for _ in range(max(100, iters // 10)):
        sess.run(None, feed)
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run(None, feed)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    res = {"name": cfg["name"], "onnxruntime": ort.__version__, "median_us": 1e6 * ts[len(ts) // 2],
           "min_us": 1e6 * ts[0], "max_abs_diff_vs_torch": err}
    with open(out_path, "w") as f:
        json.dump(res, f)


def table(results_path):
    rows = [json.loads(l) for l in open(results_path) if l.strip()]
    # The peak: CSIPOSE_FMA_PEAK_GFLOPS if set, else the one the training bench measured on
    # this CPU (the best of its FMA-loop timings, per core, on the widest vectors it uses).
    env_peak = os.environ.get("CSIPOSE_FMA_PEAK_GFLOPS")
    measured = [r["csipose_train"].get("fma_peak_gflops") for r in rows]
    measured = [p for p in measured if p]
    if env_peak:
        peak, how = float(env_peak), "from CSIPOSE_FMA_PEAK_GFLOPS"
    elif measured:
        peak, how = max(measured), "measured by the bench's FMA loop"
    else:
        peak, how = float("nan"), "unknown"
    kernel = rows[0]["csipose_train"].get("matrix_kernel", "?") if rows else "?"
    print(f"training: batch 64, AdamW, SmoothL1, mixup, dropout, EMA; FMA peak {peak:.0f} GFLOP/s "
          f"per core f32 ({how}, csipose matrix kernel {kernel}); training FLOPs = 3 x forward "
          "matrix-product FLOPs")
    print(f"{'config':<9} {'thr':>3} {'csipose/s':>10} {'%peak':>6} {'torch/s':>9} {'%peak':>6} "
          f"{'ratio':>6} {'cpu-ratio':>9} {'target':>6} | {'ORT us':>7} {'f32 us':>7} {'int8 us':>7} "
          f"{'ORT/f32':>7} {'ORT/int8':>8}")
    for r in rows:
        line = r["csipose_train"]
        fl = 3 * line["flops_per_forward"]
        thr = line["threads"]

        def frac(rate):
            return 100 * rate * fl / (thr * peak * 1e9)

        ours = line["samples_per_s_median"]
        t = r.get("torch_train")
        theirs = t["samples_per_s_median"] if t else float("nan")
        ours_cpu = line.get("samples_per_cpu_s_times_threads") or float("nan")
        theirs_cpu = (t or {}).get("samples_per_cpu_s_times_threads") or float("nan")
        name = line["config"]["name"]
        target = 3 if name in ("nano", "micro", "tiny", "small") else 2
        ort_us = r.get("ort", {}).get("median_us", float("nan"))
        f32 = r["csipose_f32"]["median_us"]
        i8 = r["csipose_int8"]["median_us"]
        print(f"{name:<9} {thr:>3} {ours:>10.0f} {frac(ours):>5.1f}% {theirs:>9.0f} "
              f"{frac(theirs):>5.1f}% {ours / theirs:>5.2f}x {ours_cpu / theirs_cpu:>8.2f}x {target:>5}x | "
              f"{ort_us:>7.1f} "
              f"{f32:>7.1f} {i8:>7.1f} {ort_us / f32:>6.2f}x {ort_us / i8:>7.2f}x")
    print("ratio = csipose / PyTorch samples/s (median of five windows); cpu-ratio = the same "
          "per CPU-second of each process (what counts on a shared machine); ORT/x = ONNX Runtime "
          "1-thread batch-1 median latency / csipose's (latency target 3x)")
    for r in rows:
        line, t = r["csipose_train"], r.get("torch_train")
        cw = line.get("cpu_per_wall")
        tw = t.get("cpu_per_wall") if t else None
        if (cw is not None and cw < 0.9 * line["threads"]) or (tw is not None and tw < 0.9 * line["threads"]):
            print(f"note: {line['config']['name']}: CPU/wall csipose {cw:.2f}, PyTorch "
                  f"{tw if tw is None else round(tw, 2)} of {line['threads']} threads: the machine "
                  "was shared, wall-clock ratios are approximate")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "train" and len(sys.argv) == 4:
        train(sys.argv[2], sys.argv[3])
    elif cmd == "latency" and len(sys.argv) == 5:
        latency(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "table" and len(sys.argv) == 3:
        table(sys.argv[2])
    else:
        raise SystemExit(__doc__)
