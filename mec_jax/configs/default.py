"""Every config key of mec_jax, with its default. Dataset configs override a few of them.

Use: ``python -m mec_jax.main --config=configs/<name>.py --workdir=DIR [--config.a.b=value ...]``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.stage = "all"  # all | pretrain | quantize | finetune | report | export
  config.report_dir = ""  # where report.json/.md/plots go; "" = the workdir (if writable)

  # --- data -------------------------------------------------------------------------------------
  config.data = data = ml_collections.ConfigDict()
  data.name = "synthetic"  # criteo_x1 | criteo_kaggle | avazu_x1 | kuairand | frappe | ipinyou | movielens | synthetic
  data.dir = ""  # directory holding the downloaded files (unused by synthetic)
  data.variant = ""  # dataset flavour, e.g. KuaiRand "pure" | "1k" | "27k"
  data.cache_dir = ""  # encoded-array cache; "" means <workdir>/cache
  data.min_count = 1  # train occurrences a value needs for an id of its own (else OOV)
  data.split_seed = 2024  # seed of random re-splits (frappe, movielens, ipinyou valid)
  data.split_fractions = (0.8, 0.1, 0.1)  # train/valid/test for datasets without an official split
  data.numeric = (
    "log"  # numeric fields: "log" (log1p-style transform) | "bucketize" (to categorical)
  )
  data.num_buckets = 32  # buckets per numeric field when data.numeric == "bucketize"
  data.max_rows = 0  # read at most this many rows per file (0 = all); for quick looks at big data
  # KuaiRand time split (inclusive YYYYMMDD bounds).
  data.train_end = 20220428
  data.valid_end = 20220503
  # Synthetic generator (data.name == "synthetic").
  data.synthetic = syn = ml_collections.ConfigDict()
  syn.num_rows = 400_000  # total rows; split by data.split_fractions
  syn.vocab_sizes = (50_000, 20_000, 5_000, 1_000, 100, 20, 10, 5)  # one categorical field each
  syn.num_numeric = 2  # numeric fields appended after the categorical ones
  syn.zipf_exponent = 1.1  # popularity skew of values within each field
  syn.zipf_exponents = ()  # per-field skews, one per vocab size; () = zipf_exponent for every field
  syn.latent_dim = 8  # dimension of the planted value embeddings
  syn.num_clusters = 32  # planted cluster structure of the value embeddings
  syn.cluster_spread = 0.3  # within-cluster std relative to the cluster centres
  syn.interaction_scale = 1.0  # weight of pairwise field interactions in the planted logit
  syn.noise_scale = 0.5  # std of the logit noise
  syn.click_rate = 0.2  # target click rate the intercept is calibrated to
  syn.seed = 0

  # --- model (stage C backbone; stage A uses pretrain.model) ---------------------------------------
  config.model = model = ml_collections.ConfigDict()
  model.name = (
    "deepfm"  # lr | fm | deepfm | dcnv2 | pnn | gdcn | fibinet | widedeep | autoint | finalmlp
  )
  model.embed_dim = 40  # d, the embedding size of every field
  model.hidden_units = ()  # MLP widths; () means the backbone's DESIGN default
  model.dropout = 0.0  # dropout rate in MLPs
  model.batch_norm = False  # batch norm in MLPs
  model.num_cross_layers = 3  # DCNv2 / GDCN cross depth
  model.structure = "parallel"  # DCNv2 / GDCN: parallel | stacked
  model.low_rank = 0  # DCNv2 low-rank mixture rank (0 = full-rank CrossNetV2)
  model.num_experts = 4  # DCNv2 low-rank mixture experts
  model.num_heads = 2  # AutoInt attention heads
  model.num_attention_layers = 3  # AutoInt layers
  model.attention_dim = 64  # AutoInt per-layer output size
  model.embedding_regularizer = 0.0  # L2 on the looked-up embeddings (per batch)

  # --- training (stages A and C) ------------------------------------------------------------------
  config.train = train = ml_collections.ConfigDict()
  train.batch_size = 4096
  train.eval_batch_size = 16384
  train.epochs = 10  # upper bound; early stopping usually ends sooner
  train.learning_rate = 1e-3
  train.grad_clip_norm = 10.0
  train.weight_decay = 0.0
  # FuxiCTR's embedding_regularizer / net_regularizer as L2 terms (λ/2)·||w||² of the loss, but the
  # embedding term only on the full-table rows a batch touches, each unique row once (dense and
  # row-sparse tables alike; mec_jax/train/losses.py). 0: off.
  train.embedding_l2 = 0.0
  train.net_l2 = 0.0  # on every weight outside the embedding tables (MLP, cross, attention, ...)
  train.patience = 2  # epochs without improvement before stopping
  train.lr_decay = 0.1  # lr factor on a plateau
  train.monitor = "auc_minus_logloss"  # validation score that drives plateau / early stop
  train.seed = 2024
  train.checkpoint_every_steps = 500  # mid-epoch checkpoints, so a killed run resumes
  train.log_every_steps = 50
  train.progress = True  # tqdm progress bars
  # Full tables with >= this many rows train row-sparse (0: none). 20k: where a table's own share of a
  # step costs the same both ways at batch 4096 (bench/RESULTS.md, "Dense vs sparse crossover").
  train.sparse_min_rows = 20_000
  train.sparse_optimizer = "rowwise_adagrad"  # of those tables: rowwise_adagrad | lazy_adam | sgd
  train.sparse_learning_rate = 0.0  # their learning rate; 0: the rate the table would get
  # k > 1: a ('data', 'model') mesh of (devices/k, k): batch split over 'data', those tables' rows
  # over 'model' (replicated across 'data'). 1: the 1-D ('data',) mesh, rows over all devices.
  # Single process only (bench/RESULTS.md, "Mesh layout").
  train.model_axis_size = 1

  # --- several processes / hosts (mec_jax.train.distributed) ------------------------------------
  config.distributed = dist = ml_collections.ConfigDict()
  dist.coordinator_address = ""  # host:port of process 0; "" = JAX_COORDINATOR_ADDRESS or none
  dist.num_processes = 0  # > 1 starts jax.distributed; 0 = from the environment / cluster
  dist.process_id = -1  # this process's index; -1 = from the environment / cluster
  dist.auto_detect = False  # let JAX detect SLURM / Open MPI / ... settings

  # --- stage A ------------------------------------------------------------------------------------
  config.pretrain = pretrain = ml_collections.ConfigDict()
  pretrain.model = "deepfm"  # backbone of stage A; may differ from model.name
  # Directory of tables trained elsewhere (<field>_embedding.npy or <field>.npz with embedding
  # [, counts, bias]): stage B compresses them instead of stage A's (mec_jax/external.py).
  pretrain.external_tables = ""
  # Row order of those tables: auto (id_order.json, else fuxictr on data.name=fuxictr, else
  # dataset; checked) | dataset (mec_jax's ids) | fuxictr (FuxiCTR's ids, PAD row 0)
  pretrain.external_index = "auto"

  # --- stage B ------------------------------------------------------------------------------------
  config.quantize = q = ml_collections.ConfigDict()
  q.variant = "mec"  # mec | reference | no_pwr | no_contrastive | no_balance | kmeans
  q.num_subspaces = 4  # M (paper L)
  q.codebook_size = 256  # K
  q.min_vocab = 1000  # fields with at least this many ids are compressed
  q.allow_nothing_to_compress = False  # if min_vocab selects no field: report the full model only
  q.latent_dim = 0  # encoder output size M*s; 0 means model.embed_dim
  q.encoder = "none"  # none (codebooks trained in table space) | block (per sub-space) | dense
  q.epochs = 30  # quantizer training epochs (upper bound; early stop on held-out rows)
  q.rows_per_epoch = 262_144  # rows drawn afresh per epoch (0: all); bounds an epoch's cost
  q.batch_size = 4096
  q.learning_rate = 1e-3
  q.patience = 3  # epochs without a new kept epoch (see q.selection) before stopping
  q.selection = "balance"  # balance: most even code usage at <= the k-means start's held-out error | error: lowest
  q.selection_tolerance = (
    0.01  # relative held-out error above the k-means start that "balance" accepts
  )
  q.holdout_fraction = 0.05  # rows held out for early stopping
  q.kmeans_iters = 25  # Lloyd iterations of the k-means initialization
  q.weighted_sampling = False  # sample rows by popularity weight instead of weighting the loss
  q.commitment = 0.25  # beta of the VQ commitment term
  q.lambda_rec = 1.0
  q.lambda_vq = 1.0
  q.lambda_bal = (
    30.0  # strong: keeps codes balanced and the table-space error low (bench/quantizer.py)
  )
  q.lambda_con = 1.0
  q.balance_temperature = 0.1  # tau_a of the soft assignment
  q.contrastive_temperature = 0.1  # tau_c of InfoNCE
  q.num_negatives = 8
  q.seed = 0

  # --- compression method (stage B) and byte budget: mec_jax/methods/ ---------------------------
  config.compress = comp = ml_collections.ConfigDict()
  comp.method = (
    "pq"  # pq (MEC, quantize.variant) | hash | qr | int8 | int4 | cce | robez | pq_head | auto
  )
  # auto: each candidate "<method>" (warm start) or "<method>:scratch" trained at the budget, the
  # best valid score (compress.auto_monitor) kept (mec_jax/auto.py). pq:scratch shares pq's stage
  # B and leads at 100x (MovieLens, Frappe); robez:scratch (synthetic, Frappe) and
  # pq_head:scratch (MovieLens) lead at 100x; qr:scratch was tried and dropped (bench/RESULTS.md)
  comp.auto_candidates = (
    "pq",
    "pq:scratch",
    "cce",
    "cce:scratch",
    "hash:scratch",
    "robez:scratch",
    "pq_head:scratch",
  )
  # auto: the validation score that picks (a train.monitor value). AUC: auc_minus_logloss picked
  # a better-calibrated, 0.012-AUC-worse model on Frappe 25x (bench/RESULTS.md, leaderboard).
  comp.auto_monitor = "auc"
  comp.target_ratio = 0.0  # compressed fields take full bytes / ratio; 0: bytes of quantize.* PQ
  # pq with a target ratio: how many (M, K) within the budget stage B tries (the best swap-in on
  # valid is kept; stage B costs that many times); 1: the one using the most bytes
  comp.pq_candidates = 4
  comp.init_tables = (
    "stage_a"  # hash/qr/cce/robez start: stage_a (fit of the stage-A rows) | random
  )
  comp.hash_function = "universal"  # hash: universal (seeded mix) | mod (id mod B)
  comp.hash_seed = 0  # hash: seed of the universal hash
  comp.qr_combine = "mult"  # qr: mult | sum of the quotient and remainder rows
  comp.qr_init_iters = 10  # qr: alternating least-squares passes of the stage_a warm start
  # qr: large-table row of id v: remainder (v mod ceil(V/c): the paper's Algorithm 1, popular ids
  # apart) | quotient (v // c: QREmbeddingBag's, the c most popular ids share a row)
  comp.qr_large_index = "remainder"
  # qr with init_tables=random: sign (large N(0, 1e-4²), small ±1: a fresh Embed row) | ones | dlrm
  comp.qr_random_init = "sign"
  comp.cce_columns = 4  # cce: columns c (divides model.embed_dim), each k clusters + k hashed rows
  comp.robez_blocks = (
    4  # robez: blocks Z per row (divides model.embed_dim), each at a hashed offset
  )
  comp.head_fraction = (
    0.0,
    0.1,
    0.25,
    0.5,
  )  # pq_head: byte share of the head rows; a list: best on valid
  comp.scale_dtype = "float16"  # int8/int4: per-row scale and offset dtype, float16 | float32

  # --- stage C ------------------------------------------------------------------------------------
  config.finetune = ft = ml_collections.ConfigDict()
  ft.init_from_pretrain = True  # warm start: all weights but codebooks from stage A (same model)
  ft.learning_rate = 0.0  # lr of the weights a warm start copies from stage A; 0 freezes them
  ft.codebook_learning_rate = 3e-5  # lr of (first-order) codebooks; 0: that of the other weights
  ft.swap_in = True  # also evaluate stage-A weights with compressed tables, keep the better one

  # --- export (mec_jax.export) -------------------------------------------------------------------
  config.export = ex = ml_collections.ConfigDict()
  ex.platforms = ("cpu",)  # jax.export lowering platforms of <workdir>/export/, e.g. cpu, cuda
  ex.full = True  # also export stage A's full model (export/full/) for the serving comparison

  return config


def defaults_of(section: str):
  """Class decorator, under ``@dataclasses.dataclass``: each annotated field of the class that is
  a key of ``get_config()[section]`` takes its default from there, so the settings dataclasses
  that mirror a section (`TrainConfig`, `QuantizeSettings`) never restate a default."""

  def apply(cls):
    values = get_config()[section]
    for name in cls.__annotations__:
      if name in values:
        setattr(cls, name, values[name])
    return cls

  return apply
