"""`make bench`'s plain-Python reference (harness/plain_server.py) is a fair one: over real HTTP it
gives the answers the shipped TorchServe gives, in the same JSON, and wants a token as it does."""
import pytest
import requests

from harness.plain_server import plain_python_server
from training.user_styles import mnist_png


@pytest.fixture(scope="module")
def plain():
    with plain_python_server() as running:
        yield running


def test_the_reference_answers_what_the_shipped_server_answers(plain, server, test_set):
    images, _ = test_set
    for image in images[200:220]:
        png = mnist_png(image)
        ours = server.predict(png).json()
        theirs = requests.post(plain.url, data=png, headers={"Authorization": f"Bearer {plain.key}"}, timeout=30).json()
        assert sorted(theirs) == sorted(ours) == ["confidence", "digit", "probabilities"]
        assert theirs["digit"] == ours["digit"]
        assert theirs["probabilities"] == pytest.approx(ours["probabilities"], abs=1e-5)


def test_the_reference_refuses_a_request_without_its_token(plain, test_set):
    images, _ = test_set
    answer = requests.post(plain.url, data=mnist_png(images[0]), headers={"Authorization": "Bearer wrong"}, timeout=30)
    assert answer.status_code == 400
