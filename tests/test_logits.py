"""The output convention, owned by `unetlab.logits`: one logit (sigmoid, two classes) or K logits (softmax)."""

import numpy as np
import torch

from unetlab.logits import activation, decide, num_labels, output_channels, probabilities


def test_one_logit_stands_for_two_classes_and_k_logits_for_k():
    assert [num_labels(k) for k in (1, 2, 5)] == [2, 2, 5]
    assert [activation(k) for k in (1, 3)] == ["sigmoid", "softmax"]
    assert output_channels(2) == (1, 2) and output_channels(4) == (4,)  # two-class data: one sigmoid logit first


def test_probabilities_are_the_sigmoid_or_the_softmax():
    logits = torch.randn(2, 1, 5, 6)
    torch.testing.assert_close(probabilities(logits), torch.sigmoid(logits))
    logits = torch.randn(2, 3, 5, 6)
    torch.testing.assert_close(probabilities(logits), torch.softmax(logits, dim=1))
    torch.testing.assert_close(probabilities(logits[0], dim=0), torch.softmax(logits[0], dim=0))


def test_decide_thresholds_one_channel_and_takes_the_argmax_of_several_for_tensors_and_arrays():
    probs = torch.tensor([[[[0.2, 0.5, 0.7]]]])  # (1, 1, 1, 3)
    assert decide(probs).tolist() == [[[0, 1, 1]]]  # p >= 0.5
    assert decide(probs, threshold=0.6).tolist() == [[[0, 0, 1]]]
    assert decide(probs.numpy(), threshold=0.6).tolist() == [[[False, False, True]]]
    many = torch.softmax(torch.randn(2, 4, 3, 3), dim=1)
    assert torch.equal(decide(many), many.argmax(1))
    np.testing.assert_array_equal(decide(many.numpy()), many.numpy().argmax(1))
