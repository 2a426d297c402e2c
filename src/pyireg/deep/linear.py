"""Deep linear networks: the depth-L factorization W_L ... W_1 of a matrix, for deep matrix
factorization demonstrations (gradient descent on the factors; the product's spectrum)."""
from __future__ import annotations

import numbers

import torch
from torch import nn

from .._validate import positive_int, positive_number


class DeepLinear(nn.Module):
    """x -> W_L ... W_1 x with W_i of shape (dims[i+1], dims[i]), initialized N(0, init_scale^2)
    entrywise (a small scale gives the low-rank bias of deep matrix factorization)."""

    def __init__(self, dims, *, init_scale: float = 1e-2, seed: int = 0, dtype=torch.float64):
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) < 2 or min(dims) < 1:
            raise ValueError(f"dims: expected at least two positive sizes, got {dims}")
        init_scale = positive_number(init_scale, "init_scale")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        g = torch.Generator().manual_seed(int(seed))
        self.factors = nn.ParameterList(
            nn.Parameter(torch.randn(dims[i + 1], dims[i], generator=g, dtype=dtype) * init_scale)
            for i in range(len(dims) - 1))

    @property
    def depth(self) -> int:
        return len(self.factors)

    def product(self) -> torch.Tensor:
        """The end-to-end matrix W_L ... W_1 (out, in)."""
        P = self.factors[0]
        for W in self.factors[1:]:
            P = W @ P
        return P

    def forward(self, x):
        for W in self.factors:
            x = x @ W.T
        return x

    def fit_entries(self, target, mask, *, lr: float = 0.1, steps: int = 1000):
        """Gradient descent on 1/2 ||mask * (product - target)||^2 / mask.sum() (matrix completion
        when mask is 0/1); returns the loss per step."""
        lr = positive_number(lr, "lr")
        steps = positive_int(steps, "steps")
        target = torch.as_tensor(target, dtype=self.factors[0].dtype)
        mask = torch.as_tensor(mask, dtype=self.factors[0].dtype)
        if target.shape != self.product().shape or mask.shape != target.shape:
            raise ValueError(f"target, mask: expected shape {tuple(self.product().shape)}")
        for name, t in (("target", target), ("mask", mask)):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name}: expected finite values")
        if bool((mask < 0).any()):
            raise ValueError("mask: expected non-negative entry weights (0/1 for matrix completion)")
        opt = torch.optim.SGD(self.parameters(), lr=lr)
        out = []
        for _ in range(steps):
            opt.zero_grad()
            loss = 0.5 * ((mask * (self.product() - target)) ** 2).sum() / mask.sum().clamp(min=1)
            loss.backward()
            opt.step()
            out.append(loss.item())
        return out
