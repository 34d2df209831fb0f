"""The PyTorch DeepFM that the throughput benches time mec_jax's train step against.

Same function as `mec_jax.models.DeepFM` without batch norm or dropout: ``bias + Σ_f w_f +
FM(e) + MLP(concat_f e_f)``, one ``nn.Embedding`` per field for the embeddings and one for the
first-order weights. Imported lazily by `bench/train_throughput.py` and `bench/vocab_scaling.py`,
so neither needs torch unless it times the reference.
"""

from __future__ import annotations

from collections.abc import Sequence


def torch_deepfm(
  vocab_sizes: Sequence[int],
  dim: int,
  hidden: Sequence[int],
  *,
  sparse_fields: Sequence[int] = (),
  init_std: float | None = None,
):
  """A ``torch.nn.Module`` mapping int64 ``ids [batch, fields]`` to logits ``[batch]``.

  Args:
    vocab_sizes: rows of each field's table.
    dim: embedding dim.
    hidden: MLP widths.
    sparse_fields: fields whose two tables give sparse gradients (``nn.Embedding(sparse=True)``,
      for ``torch.optim.SparseAdam``).
    init_std: ``N(0, init_std)`` embeddings and zero first-order weights, as mec_jax initializes
      them; None keeps torch's defaults (``N(0, 1)`` for both).
  """
  import torch

  class TorchDeepFM(torch.nn.Module):
    def __init__(self):
      super().__init__()
      sparse = [f in sparse_fields for f in range(len(vocab_sizes))]
      self.tables = torch.nn.ModuleList(
        [torch.nn.Embedding(v, dim, sparse=s) for v, s in zip(vocab_sizes, sparse, strict=True)]
      )
      self.first = torch.nn.ModuleList(
        [torch.nn.Embedding(v, 1, sparse=s) for v, s in zip(vocab_sizes, sparse, strict=True)]
      )
      if init_std is not None:
        for table in self.tables:
          torch.nn.init.normal_(table.weight, std=init_std)
        for table in self.first:
          torch.nn.init.zeros_(table.weight)
      layers, width = [], len(vocab_sizes) * dim
      for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
      layers.append(torch.nn.Linear(width, 1))
      self.mlp = torch.nn.Sequential(*layers)
      self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, ids):
      emb = torch.stack([t(ids[:, f]) for f, t in enumerate(self.tables)], dim=1)
      first = sum(t(ids[:, f])[:, 0] for f, t in enumerate(self.first))
      fm = 0.5 * (emb.sum(1) ** 2 - (emb**2).sum(1)).sum(1)
      return self.bias + first + fm + self.mlp(emb.flatten(1))[:, 0]

  return TorchDeepFM()
