"""Abuse of a real TorchServe over real HTTP: fuzzed requests among real digits, a short soak,
and a worker killed with kill -9 under load. The code is harness/load.py, which `make soak`
runs for 10 minutes; the hostile inputs come from the fuzzing generators (harness/hostile.py)."""
import gc
import math

import numpy as np
import pytest

from harness import load as driver
from harness.hostile_load import largest_image
from harness.server import serving
from harness.worker import Request
from model.errors import ForHeavyLane
from training.user_styles import mnist_png

DIGITS = 300
HOSTILE = 300
CLIENTS = 32


@pytest.fixture(scope="module")
def digits(worker, test_set, in_process) -> list[driver.Target]:
    """Real MNIST digits, each expecting the digit the in-process evaluation gives it."""
    images = test_set[0][:DIGITS]
    found = driver.digit_targets(worker, images)
    assert [t.answer for t in found] == [str(d) for d in in_process(images).argmax(axis=1)]
    return found


@pytest.fixture(scope="module")
def load(worker, digits) -> list[driver.Target]:
    return driver.mixed_targets(worker, digits, HOSTILE)


def test_fuzzed_requests_among_digits_under_concurrency(server, load):
    """Every request gets exactly its in-process answer: each digit its digit, each hostile input
    its 4xx (or 200 for an image that holds a digit); no 5xx and no worker restart, by the
    clients, TorchServe's counters, its logs and the workers' PIDs."""
    pids, deaths = [p.pid for p in server.processes()[1]], len(driver.worker_deaths(server))
    counters = driver.frontend_counters(server)
    tally = driver.drive(server, load, CLIENTS)
    assert tally.sent == len(load) == DIGITS + HOSTILE + 2
    assert dict(tally.unexpected) == {}
    assert [key for key in tally.statuses if key.endswith(("None", " 500", " 503", " 507"))] == []
    moved = driver.frontend_counters(server) - counters
    assert moved["Requests5XX"] == 0 and moved["Requests2XX"] + moved["Requests4XX"] == len(load)
    assert driver.worker_deaths(server)[deaths:] == []
    assert [p.pid for p in server.processes()[1]] == pids


def test_short_soak(server, load):
    """20 s of the mixed load at 32 clients: the checks of `make soak` except the memory slope,
    which needs its 10 minutes (the samples are printed)."""
    report = driver.soak(server, load, seconds=20, concurrency=CLIENTS, every=2, warmup=10)
    print(report["statuses"], report["memory"])
    assert report["requests"] > len(load)
    assert driver.failed(report, max_slope=math.inf) == []


def test_kill_9_of_a_worker_under_load(digits):
    """Its own server: the killed worker is replaced, only the batch it was running fails (507),
    nothing fails once the model is READY again and no request outlives responseTimeout."""
    with serving() as server:
        kill = driver.kill_during_load(server, digits, concurrency=16)
    print({key: value for key, value in kill.items() if key not in ("statuses", "deaths_logged")})
    assert driver.kill_failed(kill) == []
    assert kill["deaths_logged"], "TorchServe's log should say the worker died (what the other tests look for)"
    failed = [what for _, what in kill["failures_s_after_kill"]]
    assert all(" got 507 " in what for what in failed), failed
    assert len(failed) <= driver.MODEL_CONFIG["batchSize"]
    assert kill["requests"] > len(failed)


def test_rejected_requests_leave_no_garbage_cycles(worker):
    """The handler keeps each rejected request's error to answer it. Kept with its traceback, it
    closed a cycle (traceback -> preprocess frame -> batch -> error) that only the garbage
    collector's rare full passes free: +2 MB/min per worker in `make soak`. Every request must
    free what it used by reference counting alone."""
    rejected = [Request("json", b'{"nope": 1}', "application/json"), Request("bytes", b"garbage"),
                Request("blank", mnist_png(np.zeros((28, 28), np.uint8)), "image/png")]
    assert [worker.answer(r).status for r in rejected] == [400, 400, 422]
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            for request in rejected:
                worker.answer(request)
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_a_batch_decodes_at_most_its_pixel_budget(worker, test_set):
    """A batch of the largest legal images and digits: the first large image is decoded, the
    large ones past max_pixels_per_batch are refused 429 too_many_pixels before decoding, and
    every digit (within its share of the budget) is answered whatever came before it."""
    settings = worker.handler
    large = largest_image()
    assert settings.max_pixels_per_batch < 2 * settings.max_pixels   # two largest images overrun it
    digits = [mnist_png(image) for image in test_set[0][:4]]
    batch = [[("body", "image/png", large)]] * 3 + [[("body", "image/png", digit)] for digit in digits]
    answers = worker.predict(batch)
    assert [a.status for a in answers] == [200, 429, 429, 200, 200, 200, 200]
    assert answers[1].json()["type"] == "too_many_pixels"
    assert [a.json()["digit"] for a in answers[3:]] == [int(label) for label in test_set[1][:4]]


def test_the_fast_lane_hands_large_images_over_undecoded(worker, test_set):
    """Requests nginx sent to the fast lane carry its marker header: there an image over
    fast_lane_max_pixels is answered 421 for_heavy_lane (nginx re-sends it to the heavy lane),
    its batch peers as usual; without the marker (a client straight to TorchServe) the same image
    is decoded and answered."""
    large = largest_image(4 * worker.handler.fast_lane_max_pixels)
    digit = mnist_png(test_set[0][0])
    marked = {ForHeavyLane.marker: "1"}
    answers = worker.predict([[("body", "image/png", large)], [("body", "image/png", digit)],
                              [("body", "image/png", large)]], headers=[marked, marked, {}])
    assert [a.status for a in answers] == [ForHeavyLane.status, 200, 200]
    assert answers[0].json()["type"] == ForHeavyLane.reason
    assert [answers[1].json()["digit"], answers[2].json()["digit"]] == [int(test_set[1][0]), 1]
