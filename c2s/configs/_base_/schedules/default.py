# mmseg's default AdamW schedule (SegFormer recipe): linear warm-up, then poly decay.
optim = dict(
    lr=6e-5,
    head_lr_mult=10.0,  # decode head + projection + latent generator
    weight_decay=0.01,
    betas=(0.9, 0.999),
    warmup_iters=1500,
    warmup_ratio=1e-6,
    poly_power=1.0,
    min_lr=0.0,
    grad_clip=1.0,  # max gradient norm; 0 disables
)
train = dict(
    iters=20000,
    batch_size=16,  # global batch, split over the workers
    workers=1,
    cpus_per_worker=1.0,
    # Threads of each worker's torch ops; 0 keeps Ray's OMP_NUM_THREADS: floor(cpus_per_worker), at least 1
    # (a run without a teacher actor can use more: docs/decisions.md#torch-threads)
    torch_threads=0,
    gpus_per_worker=0.0,
    amp=True,  # bf16 autocast on GPU; ignored on CPU
    seed=0,  # also the augmentation: epoch e of the training stream uses seed + e (c2s.data.readers)
    # Batches each worker's iterator fetches ahead (Ray's iter_torch_batches(prefetch_batches=...)). The
    # stream itself ends at train.iters x batch_size rows, so the teacher never encodes images nobody trains.
    prefetch_batches=1,
    # Keep Ray Data's stream order: one worker trains on the same batches in every run of a seed, at no
    # measured cost (docs/decisions.md#stream-order). Several workers share it by Ray's streaming_split.
    preserve_order=True,
    log_interval=50,
    checkpoint_interval=2000,
    eval_interval=4000,
    max_failures=1,
    # Seconds between Ray Train's controller polls (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S; Ray's 2.0 held every
    # report up to 2 s: docs/decisions.md#controller-poll)
    controller_poll_s=0.25,
    num_to_keep=2,
    crash_at_step=0,  # fault-injection for tests: the last worker exits once at this step (0 = off)
)
evaluation = dict(mode="slide", crop_size=(512, 512), stride=(426, 426), num_panels=4, max_images=None)
# MLflow beside TensorBoard (c2s.train.tracking; pip install 'c2s[mlflow]'): null = off. A run logs to the
# experiment tracking.mlflow_experiment; a sweep's trials to "<experiment>-<sweep name>" (docs/training.md#mlflow)
tracking = dict(mlflow_uri=None, mlflow_experiment="c2s")
cache_root = None  # resolved from $C2S_CACHE (default ~/.cache/c2s) at the entrypoint
work_dir = "runs"
