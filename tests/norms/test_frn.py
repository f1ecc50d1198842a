"""FilterResponseNorm against its formula (float64), TLU, learned eps, batch independence."""

import pytest
import torch

from bnstudy.norms.frn import FilterResponseNorm

SHAPES = [(3, 4), (3, 4, 7), (2, 4, 3, 5), (2, 4, 2, 3, 2)]


def frn(channels, spatial_dims, **kwargs):
    module = FilterResponseNorm(channels, spatial_dims, **kwargs).double()
    with torch.no_grad():  # non-trivial parameters
        module.weight.copy_(torch.linspace(0.5, 2.0, channels))
        module.bias.copy_(torch.linspace(-0.5, 0.5, channels))
        if module.tau is not None:
            module.tau.copy_(torch.linspace(-0.3, 0.2, channels))
    return module


def by_hand(x, module, eps, activation=True):
    shape = (1, -1) + (1,) * (x.dim() - 2)
    spatial = tuple(range(2, x.dim()))
    nu2 = (x**2).mean(spatial, keepdim=True) if spatial else x**2
    y = module.weight.reshape(shape) * x / torch.sqrt(nu2 + eps) + module.bias.reshape(shape)
    return torch.maximum(y, module.tau.reshape(shape)) if activation else y


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_the_formula_with_its_tlu(shape):
    torch.manual_seed(0)
    module = frn(shape[1], len(shape) - 2)
    x = torch.randn(shape, dtype=torch.float64) * 3 + 0.5
    out = module(x)
    torch.testing.assert_close(out, by_hand(x, module, 1e-6))
    tau = module.tau.reshape((1, -1) + (1,) * (x.dim() - 2)).expand_as(out)
    assert (out >= tau).all()
    assert (out == tau).any() and (out > tau).any()  # the threshold is active somewhere
    module.eval()  # no running statistics: eval mode computes the same
    torch.testing.assert_close(module(x), out)


@pytest.mark.parametrize("shape", SHAPES[1:])
def test_without_activation_there_is_no_threshold(shape):
    torch.manual_seed(1)
    module = frn(shape[1], len(shape) - 2, activation=False)
    assert module.tau is None
    x = torch.randn(shape, dtype=torch.float64)
    out = module(x)
    torch.testing.assert_close(out, by_hand(x, module, 1e-6, activation=False))
    assert (out < -0.5).any()  # below every threshold the activation would apply


def test_learned_eps_is_eps_plus_the_absolute_learned_scalar():
    torch.manual_seed(2)
    module = frn(3, 2, learned_eps=True)
    assert module.eps_learned.shape == (1,) and module.eps_learned.item() == pytest.approx(1e-4)
    with torch.no_grad():
        module.eps_learned.fill_(-0.5)  # the sign does not matter: |eps_l| is used
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(module(x), by_hand(x, module, 1e-6 + 0.5))
    module(x).sum().backward()
    assert module.eps_learned.grad is not None and module.eps_learned.grad.abs().item() > 0


def test_one_spatial_value_gives_about_sign_of_x_unless_eps_is_large():
    x = torch.tensor([[3.0, -2.0, 0.5]], dtype=torch.float64)
    plain = FilterResponseNorm(3, 0, activation=False).double()
    torch.testing.assert_close(plain(x), x.sign(), atol=1e-5, rtol=0)
    # (N, C) and (N, C, 1, 1) inputs compute the same thing
    flat = FilterResponseNorm(3, 2, activation=False).double()
    torch.testing.assert_close(flat(x.reshape(1, 3, 1, 1)).reshape(1, 3), plain(x))
    smooth = FilterResponseNorm(3, 0, eps=1.0, activation=False).double()
    torch.testing.assert_close(smooth(x), x / torch.sqrt(x**2 + 1))


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 2, 3, 2), (1, 2, 2, 2, 2)])
def test_gradcheck(shape):
    torch.manual_seed(3)
    module = frn(shape[1], len(shape) - 2, learned_eps=True)
    names = [name for name, _ in module.named_parameters()]

    def call(x, *params):
        return torch.func.functional_call(module, dict(zip(names, params, strict=True)), (x,))

    x = torch.randn(shape, dtype=torch.float64)
    inputs = (x, *(p.detach() for p in module.parameters()))
    assert torch.autograd.gradcheck(call, tuple(t.clone().requires_grad_() for t in inputs))


def test_a_sample_alone_equals_the_sample_in_a_batch():
    torch.manual_seed(4)
    module = frn(4, 2)
    x = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    batch = module(x)
    for i in range(5):
        torch.testing.assert_close(module(x[i : i + 1]), batch[i : i + 1], rtol=0, atol=1e-14)


def test_wrong_rank_is_a_clear_error():
    with pytest.raises(ValueError, match="expected a 5D input, got shape"):
        FilterResponseNorm(4, 3)(torch.randn(2, 4, 3, 3))
