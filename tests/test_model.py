"""LeNet-5 exactly as specified."""
import torch

from model.lenet5 import LeNet5


def test_layer_shapes_and_parameter_count():
    model = LeNet5()
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {
        "features.0.weight": (6, 1, 5, 5), "features.0.bias": (6,),
        "features.1.weight": (6,), "features.1.bias": (6,),            # BatchNorm after conv 1
        "features.4.weight": (16, 6, 5, 5), "features.4.bias": (16,),
        "classifier.1.weight": (120, 400), "classifier.1.bias": (120,),
        "classifier.3.weight": (84, 120), "classifier.3.bias": (84,),
        "classifier.5.weight": (10, 84), "classifier.5.bias": (10,),
    }
    assert sum(p.numel() for p in model.parameters()) == 61_718


def test_forward_gives_logits_for_a_batch():
    model = LeNet5().eval()
    out = model(torch.randn(3, 1, 32, 32))
    assert out.shape == (3, 10)
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))     # logits, not probabilities
