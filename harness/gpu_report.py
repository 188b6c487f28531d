"""The GPU check's verdicts and its report.md (scripts/gpu_check.py)."""
import json

import numpy as np

from harness.gpu_checks import ATTRIBUTION_TOLERANCE, PROBABILITY_TOLERANCE
from harness.gpu_speed import PhaseClock
from model.errors import HTTP_STATUS


def as_json(value, **options) -> str:
    """JSON of the report, numpy's numbers as Python's."""
    return json.dumps(value, default=lambda o: o.item() if isinstance(o, np.generic) else str(o), **options)


def verdicts(report: dict) -> list[tuple[str, str, str]]:
    """(check, PASS / FAIL / SKIPPED, detail) for every check."""
    rows = [("the check ran to its end", "FAIL", report["error"].strip().splitlines()[-1])] if "error" in report else []
    rows += [(f"{name} ran to its end", "FAIL", error.strip().splitlines()[-1])
             for name, error in report.get("errors", {}).items()]
    answers, explanations = report.get("answers"), report.get("explanations", {})
    if answers is None:
        if "no_gpu" in report:
            rows.append(("CUDA answers equal the CPU's", "SKIPPED", report["no_gpu"]))
    else:
        ok = (answers["same_digit"] == answers["digits"]
              and answers["max_probability_difference"] <= PROBABILITY_TOLERANCE)
        rows.append(("CUDA answers equal the CPU's", "PASS" if ok else "FAIL",
                     f"{answers['same_digit']}/{answers['digits']} same digit, largest probability difference "
                     f"{answers['max_probability_difference']:.2e} (tolerance {PROBABILITY_TOLERANCE:g})"))
    for device, results in report.get("refusals", {}).items():
        good = sum(r["ok"] for r in results)
        rows.append((f"bad inputs keep their 4xx on {device}", "PASS" if good == len(results) else "FAIL",
                     f"{good}/{len(results)} as expected, with a digit beside each in its batch"))
    for device, result in explanations.get("completeness", {}).items():
        rows.append((f"explanations complete on {device}",
                     "PASS" if result["complete"] == result["maps"] else "FAIL",
                     f"{result['complete']}/{result['maps']} maps, largest convergence delta "
                     f"{result['max_abs_convergence_delta']:.4f}"))
    if "cuda_vs_cpu" in explanations:
        same = explanations["cuda_vs_cpu"]
        ok = same["same_target"] == same["within_tolerance"] == same["maps"]
        rows.append(("CUDA explanations equal the CPU's", "PASS" if ok else "FAIL",
                     f"{same['within_tolerance']}/{same['maps']} maps within {ATTRIBUTION_TOLERANCE:g} relative L2 "
                     f"(worst {same['max_relative_attribution_difference']:.2e})"))
    elif "no_gpu" in report:
        rows.append(("CUDA explanations equal the CPU's", "SKIPPED", report["no_gpu"]))
    server = report.get("server")
    if server is None:
        pass
    elif "skipped" in server:
        rows.append(("real TorchServe over HTTP", "SKIPPED", server["skipped"]))
    else:
        on_device = server["handler_log_devices"] == [server["device_in_process"]]
        ok = (on_device and server["same_digit"] == server["predictions"]
              and server["max_probability_difference"] <= PROBABILITY_TOLERANCE
              and server["refusal"] == {"status": HTTP_STATUS["not_an_image"], "type": "not_an_image"}
              and server["explanation_status"] == 200 and not server["explanation_problems"]
              and server["explanation_relative_difference"] <= ATTRIBUTION_TOLERANCE)
        rows.append(("real TorchServe over HTTP", "PASS" if ok else "FAIL",
                     f"{server['workers']} workers on "
                     f"{', '.join(server['handler_log_devices']) or 'no device logged'}, "
                     f"READY in {server['ready_s']} s; {server['same_digit']}/{server['predictions']} digits as "
                     f"in-process; refusal {server['refusal']['status']}; explanation {server['explanation_status']}"))
    return rows


def markdown(report: dict) -> str:
    lines = ["# GPU check", ""]
    env = report.get("environment")
    if env:
        lines += [f"{env['gpu'] or 'No GPU'}; Python {env['python']} on {env['machine']}, {env['cpus']} CPUs; "
                  f"torch {env['torch']} (CUDA {env['torch_cuda']}, cuDNN {env['cudnn']}; the project pins "
                  f"{env['torch_pinned']}); TorchServe {env['torchserve']}, Captum {env['captum']}; "
                  f"Java: {env['java'] or 'none'}; dependencies: {report['dependencies']}.", ""]
    if "no_gpu" in report:
        lines += [f"**{report['no_gpu']}**", ""]
    lines += ["| check | result | detail |", "|---|---|---|"]
    lines += [f"| {check} | {result} | {detail} |" for check, result, detail in report["verdicts"]]
    if "error" in report:
        lines += ["", "```", report["error"].rstrip(), "```"]
    answers = report.get("answers")
    if answers:
        lines += ["", f"Answers: {answers['digits']} MNIST test digits, accuracy CPU {answers['accuracy_cpu']:.2%}, "
                      f"CUDA {answers['accuracy_cuda']:.2%}; mean probability difference "
                      f"{answers['mean_probability_difference']:.2e}. "
                      f"Float32 matmul precision {report['precision']['float32_matmul']}, cuDNN TF32 "
                      f"{report['precision']['cudnn_tf32']}."]
        lines += [f"- digit {d['index']}: CPU {d['cpu']}, CUDA {d['cuda']} "
                  f"(CPU top-2 margin {d['cpu_top2_margin']:.2e})"
                  for d in answers["different_digit"]]
    strict = report.get("strict_fp32")
    if answers and strict:
        lines += ["", f"With TF32 off on CUDA: {strict['same_digit']}/{answers['digits']} same digit, largest "
                      f"probability difference {strict['max_probability_difference']:.2e}, worst map "
                      f"{strict['max_relative_attribution_difference']:.2e} "
                      "relative L2 from the CPU's."]
    if "accuracy_cpu" in report:
        lines += ["", f"Answers: {report['parameters']['digits']} MNIST test digits on the CPU, accuracy "
                      f"{report['accuracy_cpu']:.2%}."]
    if "speed" in report:
        lines += speed_tables(report["speed"])
    server = report.get("server")
    if server:
        lines += ["", "## Real TorchServe", ""]
        lines.append(f"Skipped: {server['skipped']}" if "skipped" in server else
                     "```\n" + as_json(server, indent=2) + "\n```")
    for name, error in report.get("errors", {}).items():
        lines += ["", f"## {name} failed", "", "```", error.rstrip(), "```"]
    bundle = env and env["bundle"]
    if bundle and bundle["wheels"]:
        mib = 2**20
        lines += ["", "## What travelled", "", "| file | MiB |", "|---|---|"]
        lines += [f"| {name} | {size / mib:.2f} |" for name, size in bundle["files"].items()]
        published = sum(w.get("published_wheel_bytes", w["wheel_bytes"]) for w in bundle["wheels"].values())
        lines += ["", f"Bundle {bundle['bundle_bytes'] / mib:.2f} MiB + repository "
                      f"{bundle['repository_bytes'] / mib:.2f} MiB = {bundle['total_bytes'] / mib:.2f} MiB of "
                      f"{bundle['limit_bytes'] / mib:.0f} MiB. The wheels "
                      f"as published weigh {published / mib:.2f} MiB; TorchServe's was repacked without the frontend "
                      "jar's unused libraries (scripts/gpu_bundle.py)."]
    return "\n".join(lines) + "\n"


def speed_tables(speed: dict) -> list[str]:
    devices = [d for d in ("cpu", "cuda") if d in speed["points"][0]]
    lines = ["", f"## Speed in-process (torch threads: {speed['torch_threads']}, the archive's torch_threads)", "",
             "| batch | " + " | ".join(f"{d} images/s | {d} model alone" for d in devices)
             + (" | CUDA vs CPU |" if "cuda" in devices else " |"),
             "|---" * (1 + 2 * len(devices) + ("cuda" in devices)) + "|"]
    for point in speed["points"]:
        row = [str(point["batch"])] + [f"{point[d]['images_per_s']:,.0f} | {point[d]['model_alone_images_per_s']:,.0f}"
                                       for d in devices]
        if "cuda" in devices:
            row.append(f"{point['cuda']['images_per_s'] / point['cpu']['images_per_s']:.2f}x")
        lines.append("| " + " | ".join(row) + " |")
    device = devices[-1]
    lines += ["", f"Where a batch's time goes on {device} (ms per batch; decode and normalize run on the CPU, "
                  "image by image):", "",
              "| batch | " + " | ".join(PhaseClock.STEPS) + " | TorchServe | normalizer share |",
              "|---" * (len(PhaseClock.STEPS) + 3) + "|"]
    for point in speed["points"]:
        ms = point[device]["ms_per_batch"]
        lines.append(f"| {point['batch']} | " + " | ".join(f"{ms[s]:.3f}" for s in (*PhaseClock.STEPS, "torchserve"))
                     + f" | {point[device]['normalizer_share']:.0%} |")
    lines += ["", "Decode + normalize in parallel processes, as that many workers sharing one GPU would run them:", "",
              "| processes | images/s |", "|---|---|"]
    lines += [f"| {p['processes']} | {p['images_per_s']:,.0f} |" for p in speed["normalizer_processes"]]
    return lines
