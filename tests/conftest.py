"""Fixtures shared by several test modules."""

import jax
import pytest


@pytest.fixture
def on_the_cpu():
  """Runs a test on the CPU device also where JAX's default backend is a
  GPU or TPU (for tests about XLA:CPU programs: a module takes it with
  `pytestmark = pytest.mark.usefixtures("on_the_cpu")`)."""
  with jax.default_device(jax.devices("cpu")[0]):
    yield
