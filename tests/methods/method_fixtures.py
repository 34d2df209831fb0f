"""What the method tests share: a field stand-in and the smoke config with ``compress.*`` set."""

from configs import smoke


class FieldStub:
  """A `FieldSpec` stand-in for the budget planners: a name and a vocabulary size."""

  name = "f"

  def __init__(self, vocab: int):
    self.vocab_size = vocab


def smoke_config(**compress):
  """``configs/smoke.py`` with the given ``compress.<key>=value`` overrides."""
  config = smoke.get_config()
  for key, value in compress.items():
    setattr(config.compress, key, value)
  return config
