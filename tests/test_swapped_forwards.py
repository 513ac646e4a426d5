"""The export-time forward swap (optibridge.exporter.swapped_forwards): the replacement runs inside the block,
and afterwards, even after an exception, each module has exactly the forward it had before."""

from __future__ import annotations

import types

import pytest
import torch

from optibridge.exporter.swapped_forwards import swapped_forwards


class Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def _plus_one(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x + 1


X = torch.tensor([1.0, 3.0])


def test_the_replacement_runs_in_the_block_and_the_class_forward_comes_back():
    module, other = Doubler(), Doubler()
    with swapped_forwards([(module, types.MethodType(_plus_one, module))]) as changed:
        assert changed == 1
        torch.testing.assert_close(module(X), torch.tensor([2.0, 4.0]))  # through nn.Module.__call__
        torch.testing.assert_close(other(X), torch.tensor([2.0, 6.0]))  # an instance attribute: other modules untouched
    assert "forward" not in vars(module)
    torch.testing.assert_close(module(X), torch.tensor([2.0, 6.0]))


def test_the_class_forward_comes_back_when_the_block_raises():
    module = Doubler()
    with pytest.raises(RuntimeError, match="export failed"), swapped_forwards([(module, types.MethodType(_plus_one, module))]):
        torch.testing.assert_close(module(X), torch.tensor([2.0, 4.0]))
        raise RuntimeError("export failed")
    assert "forward" not in vars(module)
    torch.testing.assert_close(module(X), torch.tensor([2.0, 6.0]))


def test_a_pre_existing_instance_forward_is_put_back_not_deleted():
    module = Doubler()
    own = types.MethodType(lambda self, x: -x, module)
    module.forward = own
    with swapped_forwards([(module, types.MethodType(_plus_one, module))]):
        torch.testing.assert_close(module(X), torch.tensor([2.0, 4.0]))
    assert vars(module)["forward"] is own
    torch.testing.assert_close(module(X), torch.tensor([-1.0, -3.0]))


def test_a_module_listed_twice_ends_up_as_it_began():
    module = Doubler()
    swaps = [(module, types.MethodType(_plus_one, module)), (module, types.MethodType(lambda self, x: 10 * x, module))]
    with swapped_forwards(swaps) as changed:
        assert changed == 2
        torch.testing.assert_close(module(X), torch.tensor([10.0, 30.0]))  # the last one wins
    assert "forward" not in vars(module)  # not the first replacement, which the second one saw as "before"


def test_swaps_already_set_are_undone_when_a_lazy_iterable_fails():
    module = Doubler()

    def swaps():
        yield module, types.MethodType(_plus_one, module)
        raise ValueError("no more modules")  # before the block starts

    with pytest.raises(ValueError, match="no more modules"), swapped_forwards(swaps()):
        pytest.fail("the block must not run")
    assert "forward" not in vars(module)
    torch.testing.assert_close(module(X), torch.tensor([2.0, 6.0]))
