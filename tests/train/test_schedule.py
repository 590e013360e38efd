import math

import pytest

from lorasweep.train.schedule import lr_factor, warmup_steps


def test_warmup_steps_round_up():
    assert warmup_steps(4, 0.03) == 1
    assert warmup_steps(512, 0.03) == 16
    assert warmup_steps(25_000, 0.03) == 750
    assert warmup_steps(100, 0.0) == 0


def test_cosine_with_warmup_values():
    total, warm = 10, 2
    f = [lr_factor(s, total, warm, "cosine") for s in range(total)]
    assert f[0] == pytest.approx(1 / 3) and f[1] == pytest.approx(2 / 3)  # never LR 0 on step 0
    assert f[2] == pytest.approx(1.0)
    assert f[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert all(a >= b for a, b in zip(f[2:], f[3:], strict=False))
    assert f[-1] > 0


def test_linear_and_constant():
    assert lr_factor(5, 10, 0, "linear") == pytest.approx(0.5)
    assert lr_factor(9, 10, 0, "constant") == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0, 10, 0, "step")
