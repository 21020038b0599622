"""``make gpu-check``: every CUDA path of Ferry in one command, on a lent GPU machine.

GPU time is rare here (one H100/H200 for ~15 minutes, now and then), and the CPU tests cannot
see the GPU paths, so one prepared command covers them all: the steps below run one after
another as subprocesses, each with its own timeout inside a total budget (a failed step is
reported and the rest still run), in a throwaway project that starts as a fresh clone does
(configs/, data.dvc and .dvc/config copied, data/ rebuilt from its recipes; its own MLflow
store, checkpoints and Prefect home). It installs nothing. It prints one pass/fail table with
figures, also written to benchmarks/results/gpu_check.md (the logs beside it) for the README.
Without a usable CUDA device it stops at once: exit status 2 and one line on stderr.

    python benchmarks/gpu_check.py [--steps text serve ...] [--budget 570] [--out DIR] [--keep]

Each step, what it asserts, and the CPU tests that already run the same path on a CPU:

text        `ferry run`, the README's default job as a user runs it; every complete.json's
            runtime: device cuda, autocast bf16, data resident, the fine-tune packed
    tests/integration/test_flow.py::test_flow_tracks_registers_and_predicts_by_alias
    tests/integration/test_real_data.py::test_real_flow_on_fresh_clone_predicts_by_alias
    tests/unit/test_packing.py::test_fit_with_packing_ends_at_the_padded_weights
compiled    the same job with train.compile=on (retrained): compiled and packed on cuda
    tests/unit/test_fast_path.py::test_fast_compiled_path_learns_what_the_plain_path_learns
    tests/unit/test_cuda_paths.py::test_compile_is_chosen_by_expected_steps
serve       `ferry serve` of that model: POST /invocations answers each text with a label;
            the server holds GPU memory (NVML)
    tests/integration/test_serve.py::test_answers_mlflow_protocol_with_the_pyfuncs_probabilities
    tests/integration/test_serve.py::test_concurrent_requests_share_a_predict
predict     `ferry predict` of 256 reviews: every row scored, the Parquet file written, the
            GPU used (NVML)
    tests/integration/test_scoring.py::test_predict_writes_every_column_and_logs_the_scoring_run
image       `ferry run -c configs/image.yaml` (2 epochs, no scratch): runtime as for text
    tests/integration/test_images.py::test_image_flow_trains_scores_and_registers
sweep       `ferry sweep` (1 epoch) with sweep.concurrency auto: one at a time on a GPU,
            every training's runtime on cuda
    tests/integration/test_experiments.py
        ::test_sweep_runs_every_strategy_as_child_runs_and_registers_the_best
nproc       `ferry run --nproc N`, N = the GPUs present (DDP over NCCL): world size N on cuda;
            with one GPU Ferry trains in-process, so NCCL's all-reduce runs under torchrun alone
    tests/integration/test_distributed.py::test_two_gloo_processes_match_one
throughput  benchmarks/throughput.py, cases minilm-real, bert-base-real, bert-base-128 (the three
            targets), --repeats 1 (Ferry vs the Trainer): a ratio line per case; what it
            printed goes into the report verbatim
    tests/integration/test_benchmark.py::test_throughput_benchmark_smoke
"""

from __future__ import annotations

import argparse
import csv
import itertools
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpu_check_lib import Check, Gpu, http, make_project, need, runtime

REPO = Path(__file__).resolve().parents[1]
DRIVER_FILES = ("/dev/nvidiactl", "/proc/driver/nvidia/version")
NO_GPU = ("gpu_check: needs a CUDA GPU ({why}); on this machine run the CPU tests instead: "
          "make test")
THROUGHPUT_CASES = ("minilm-real", "bert-base-real", "bert-base-128")  # the three targets
TEXTS = ["A moving, beautifully acted film.", "A dull, lifeless mess.", "Funny and warm.",
         "Two hours I will never get back.", "A triumph.", "Boring, predictable and long.",
         "The cast is superb.", "It never finds its footing."]


def gpu_problem(check_driver: bool = True) -> str | None:
    """Why this machine cannot run the check, or None. Without the NVIDIA driver's files the
    answer comes before torch is imported (milliseconds on a CPU machine); else torch says."""
    if check_driver and not any(Path(p).exists() for p in DRIVER_FILES):
        return "no NVIDIA driver found"
    import warnings

    with warnings.catch_warnings():  # torch warns on stderr when CUDA cannot start
        warnings.simplefilter("ignore")
        import torch

        if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
            return "torch finds no usable CUDA device"
    return None


def text_step(c: Check) -> str:
    """The default job, unchanged: what `make run` does on a GPU machine (packed batches;
    eager, as `compile: auto` decides for a job of a few hundred steps)."""
    out = c.ferry("text", "run")
    folder = c.project / c.setting("paths", "checkpoints", ".ferry/checkpoints")
    tuned = runtime(folder, "transfer", packed=True)
    runtime(folder, "scratch")
    acc = re.search(r"test_accuracy (\d\.\d+)", out)
    return f"test acc {acc.group(1) if acc else '?'}; {tuned}"


def compiled_step(c: Check) -> str:
    """The default job again with `train.compile: on` (packed shapes through inductor and
    Triton, which needs the C compiler), retrained rather than reused."""
    out = c.ferry("compiled", "run", "--set", "train.compile=on", "--set", "train.resume=false",
                  "--set", "baseline=none", "--set", "shift.enabled=false",
                  "--set", "receipt.classical=false", "--set", "paths.checkpoints=.ferry/ckpt-c")
    tuned = runtime(c.project / ".ferry/ckpt-c", "transfer", compiled=True, packed=True)
    acc = re.search(r"test_accuracy (\d\.\d+)", out)
    return f"test acc {acc.group(1) if acc else '?'}; {tuned}"


def registered(c: Check) -> str:
    """NAME@ALIAS of the model the text step registered (tracking.* of configs/default.yaml)."""
    return (c.setting("tracking", "model_name", "ferry-rotten-tomatoes") + "@" +
            c.setting("tracking", "alias", "challenger"))


def serve_step(c: Check) -> str:
    """Start the server, wait for /health, POST texts, stop it with Ctrl-C (SIGINT)."""
    port = c.free_port()
    url = f"http://127.0.0.1:{port}"
    with c.background("serve", "serve", "--model", registered(c), "--port", str(port)) as proc:
        while http(url + "/health", timeout=5.0)[0] != 200:
            need(proc.poll() is None, f"ferry serve exited with {proc.returncode}")
            need(time.monotonic() < c.until, "/health never answered 200")
            time.sleep(1.0)
        status, body = http(url + "/invocations", {"inputs": TEXTS})
        need(status == 200, f"/invocations answered {status}")
        labels = body.get("predictions", [])
        need(len(labels) == len(TEXTS) and set(labels) <= {"fresh", "rotten"},
             f"unexpected predictions {labels!r}")
        waits = []
        for text in TEXTS * 3:
            began = time.perf_counter()
            need(http(url + "/invocations", {"inputs": [text]})[0] == 200, "a request failed")
            waits.append(time.perf_counter() - began)
        held = c.gpu.extra_mib()
    need(held is None or held >= 200, f"the server took only {held} MiB of GPU memory")
    p50 = sorted(waits)[len(waits) // 2] * 1000
    return f"{labels.count('fresh')}/{len(TEXTS)} fresh; single-text p50 {p50:.1f} ms"


def predict_step(c: Check) -> str:
    """A batch of the project's own reviews, scored by the model the text step registered."""
    source = c.project / "data" / "rotten_tomatoes.csv"
    need(source.is_file(), f"{source} is missing (the text step rebuilds it)")
    with source.open(encoding="utf-8", newline="") as handle:
        texts = [row["text"] for row in itertools.islice(csv.DictReader(handle), 256)]
    batch = c.project / "incoming" / "batch.csv"
    batch.parent.mkdir(exist_ok=True)
    with batch.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([["text"], *([t] for t in texts)])
    scored = c.project / "scored" / "batch.parquet"
    out = c.ferry("predict", "predict", str(batch), "--model", registered(c), "--out",
                  str(scored))
    rows = re.search(r"([\d,]+) of ([\d,]+) rows scored", out)
    need(rows is not None and rows.group(1) == rows.group(2) == str(len(texts)),
         f"not every row scored: {rows.group(0) if rows else 'no count printed'}")
    need(scored.is_file(), f"{scored} was not written")
    held = c.gpu.extra_mib()
    need(held is None or held >= 200, f"predict took only {held} MiB of GPU memory")
    confidence = re.search(r"mean confidence (\d\.\d+)", out)
    return f"{rows.group(1)} rows; mean confidence {confidence.group(1) if confidence else '?'}"


def image_step(c: Check) -> str:
    """The image job, shortened: 2 epochs, no scratch baseline (the text step ran one)."""
    out = c.ferry("image", "run", "-c", "configs/image.yaml", "--set", "train.epochs=2",
                  "--set", "baseline=none", "--set", "paths.checkpoints=.ferry/ckpt-image")
    tuned = runtime(c.project / ".ferry/ckpt-image", "transfer", compiled=True)
    acc = re.search(r"test_accuracy (\d\.\d+)", out)
    return f"test acc {acc.group(1) if acc else '?'}; {tuned}"


def sweep_step(c: Check) -> str:
    """Every strategy, 1 epoch, `concurrency: auto` (one at a time on a GPU: compile is not
    thread-safe and one device's default stream gives threads no overlap)."""
    out = c.ferry("sweep", "sweep", "--set", "train.epochs=1", "--set", "sweep.concurrency=auto",
                  "--set", "paths.checkpoints=.ferry/ckpt-sweep")
    plan = re.search(r"Sweeping (.+) \((\d+) at a time\)", out)
    need(plan is not None, "no 'Sweeping ... (N at a time)' line")
    names, workers = plan.group(1).split(", "), int(plan.group(2))
    need(workers == 1, f"auto ran {workers} at a time on one GPU (docs/decisions.md: 1)")
    devices = [d.get("runtime", {}).get("device") for d in
               Check.completions(c.project / ".ferry/ckpt-sweep", "*")]
    need(any(devices), "no training recorded a runtime")
    need(all(str(d).startswith("cuda") for d in devices if d), f"devices {devices}")
    best = re.search(r"best by validation \S+: (\S+) ->", out)
    return (f"{len(names)} strategies, {workers} at a time, {len(devices)} trainings on cuda;"
            f" best {best.group(1) if best else '?'}")


NCCL_SMOKE = """import os, torch, torch.distributed as dist
torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
dist.init_process_group("nccl")
x = torch.ones(1, device="cuda")
dist.all_reduce(x)
assert x.item() == dist.get_world_size()
print("nccl", ".".join(map(str, torch.cuda.nccl.version())), "all_reduce ok")
dist.destroy_process_group()
"""


def nproc_step(c: Check) -> str:
    """DDP over every GPU present; on one GPU the world is 1 and no process group forms, so
    NCCL is exercised by a one-process all-reduce under torchrun instead."""
    c.ferry("nproc", "run", "--nproc", str(c.gpus), "--set", "train.epochs=1", "--set",
            "baseline=none", "--set", "shift.enabled=false", "--set", "receipt.classical=false",
            "--set", "paths.checkpoints=.ferry/ckpt-ddp")
    folder = c.project / ".ferry/ckpt-ddp"
    done = Check.completions(folder, "transfer")
    need(len(done) == 1, f"{len(done)} transfer trainings recorded")
    need(done[0].get("world_size") == c.gpus, f"world size {done[0].get('world_size')}")
    figures = runtime(folder, "transfer")
    if c.gpus > 1:
        need(any(folder.glob("transfer-*/ddp-spec.json")), "no ddp-spec.json: no torchrun")
        return f"{c.gpus} processes over NCCL; {figures}"
    script = c.project / "nccl_smoke.py"
    script.write_text(NCCL_SMOKE, encoding="utf-8")
    out = c.sh("nproc", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                         "--nproc-per-node", "1", str(script)])
    version = re.search(r"nccl (\S+) all_reduce ok", out)
    need(version is not None, "the NCCL all-reduce printed no result")
    return f"1 GPU: in-process fine-tune; NCCL {version.group(1)} all-reduce ok; {figures}"


def throughput_step(c: Check) -> str:
    """The throughput benchmark's MiniLM and BERT-base cases, one repeat each (the budget);
    what it printed goes into the report verbatim, a partial table too."""
    log = c.logs / "throughput.log"
    try:
        out = c.sh("throughput", [sys.executable, "benchmarks/throughput.py", "--cases",
                                  *THROUGHPUT_CASES, "--samples", "4096", "--repeats", "1"],
                   cwd=REPO)
    finally:
        printed = log.read_text(errors="replace").splitlines() if log.exists() else []
        c.verbatim["throughput"] = "\n".join(
            [line for line in printed if line.strip() and not line.startswith("$ ")][-120:])
    ratios = re.findall(r"^(\S+)\s+(ratio\S*)\s.*?(\d+\.\d+)x", out, re.M)
    need({case for case, _, _ in ratios} == set(THROUGHPUT_CASES),
         f"ratio lines printed: {ratios}")
    return "; ".join(f"{case} {name} {value}x" for case, name, value in ratios)


@dataclass(frozen=True)
class Step:
    """One line of the table: a function that raises on failure and returns its figures."""

    name: str
    run: Callable[[Check], str]
    timeout: float  # seconds, within what is left of the budget
    needs: str | None = None  # skipped when this step ran and did not pass


STEPS = (Step("text", text_step, 240), Step("compiled", compiled_step, 180),
         Step("serve", serve_step, 120, "text"),
         Step("predict", predict_step, 120, "text"), Step("image", image_step, 180),
         Step("sweep", sweep_step, 240), Step("nproc", nproc_step, 180),
         Step("throughput", throughput_step, 300))


def run_steps(c: Check, steps: list[Step], budget_end: float) -> list[tuple[str, ...]]:
    """Each step in turn, timed, its failure caught and reported: (step, result, s, figures)."""
    rows, results = [], {}
    for step in steps:
        left = budget_end - time.monotonic()
        if step.needs in results and results[step.needs] != "pass":
            result, seconds, figures = "skipped", 0.0, f"needs a passing {step.needs} step"
        elif left < 20:
            result, seconds, figures = "skipped", 0.0, "out of budget"
        else:
            print(f"gpu_check: {step.name} (up to {min(step.timeout, left):.0f} s)", flush=True)
            c.until = time.monotonic() + min(step.timeout, left)
            began = time.monotonic()
            with c.gpu.watch() as seen:
                try:
                    result, figures = "pass", step.run(c)
                except Exception as exc:  # any failure is this step's, never the check's
                    result, figures = "FAIL", (str(exc).splitlines() or [repr(exc)])[0][:300]
            seconds = time.monotonic() - began
            figures += f"; GPU peak {seen['peak_gib']:.1f} GiB" if seen.get("peak_gib") else ""
        results[step.name] = result
        rows.append((step.name, result, f"{seconds:.0f}", figures))
        print(f"gpu_check: {step.name} {result} ({seconds:.0f} s): {figures}", flush=True)
    return rows


def report(rows: list[tuple[str, ...]], head: str, verbatim: dict[str, str]) -> str:
    """The summary as Markdown: the table, then any step output kept verbatim."""
    lines = [head, "", "| step | result | seconds | figures |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(cell.replace('|', '/') for cell in row)} |" for row in rows]
    for name, text in verbatim.items():
        lines += ["", f"{name}:", "", "```", text, "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Refuse a machine without a GPU before any work (exit 2); else run the steps, write the
    report and exit 0 only when every step passed (a skipped step is not a pass)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", nargs="+", choices=[s.name for s in STEPS],
                        default=[s.name for s in STEPS])
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for all steps")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--keep", action="store_true", help="keep the project folder")
    args = parser.parse_args(argv)
    problem = gpu_problem()
    if problem:
        print(NO_GPU.format(why=problem), file=sys.stderr)
        return 2
    budget_end = time.monotonic() + args.budget
    import torch

    root = Path(tempfile.mkdtemp(prefix="ferry-gpu-check-"))
    logs = args.out / "gpu_check-logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    c = Check(REPO, make_project(REPO, root / "project"), logs, torch.cuda.device_count(),
              Gpu())
    try:
        rows = run_steps(c, [s for s in STEPS if s.name in args.steps], budget_end)
    finally:
        if args.keep:
            print(f"gpu_check: the project is kept in {root / 'project'}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    spent = time.monotonic() - (budget_end - args.budget)
    head = (f"Ferry GPU check, {time.strftime('%Y-%m-%d %H:%M')}: {c.gpu.describe()}; "
            f"torch {torch.__version__}; {len(rows)} steps in {spent:.0f} s "
            f"(budget {args.budget:.0f} s)")
    text = report(rows, head, c.verbatim)
    (args.out / "gpu_check.md").write_text(text, encoding="utf-8")
    print("\n" + text + f"\n(written to {args.out / 'gpu_check.md'}; logs in {logs})")
    return 0 if all(row[1] == "pass" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
