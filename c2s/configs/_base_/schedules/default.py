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
    # (ray/_private/utils.py, set_omp_num_threads_if_unset). A run with no teacher actor on an otherwise idle
    # machine can use more: toy_baseline at cpus_per_worker 0.5 trained at 70 img/s on 1 thread, 96 on 2.
    torch_threads=0,
    gpus_per_worker=0.0,
    amp=True,  # bf16 autocast on GPU; ignored on CPU
    seed=0,  # also the augmentation: epoch e of the training stream uses seed + e (c2s.data.readers)
    # Batches each worker's iterator fetches ahead (Ray's iter_torch_batches(prefetch_batches=...)). The
    # stream itself ends at train.iters x batch_size rows, so the teacher never encodes images nobody trains.
    prefetch_batches=1,
    # Ray Data hands blocks to training in the order their tasks finish unless told to keep the stream's
    # order (ExecutionOptions.preserve_order, c2s.train.trainer.train_data_config): with it one worker trains on
    # the same batches in every run of a seed. Measured, two runs each, loss per step compared:
    # c2s train toy_baseline train.iters=60: identical (without it: different from step 1), median 63-66 img/s
    # either way; toy_c2s train.iters=80 (live teacher): identical (without: different from step 19), 39-40 img/s
    # with, 38.9 without. Several workers share the stream by Ray's streaming_split: not fixed per worker.
    preserve_order=True,
    log_interval=50,
    checkpoint_interval=2000,
    eval_interval=4000,
    max_failures=1,
    # Seconds between Ray Train's controller polls of the workers (Ray 2.60's RAY_TRAIN_HEALTH_CHECK_INTERVAL_S,
    # default 2.0; c2s.train.trainer sets it for the run). A worker's report() blocks until the controller has
    # taken the previous one (a queue of one, ray/train/v2/_internal/execution/worker_group/worker.py), so at
    # Ray's 2 s every report after a short interval waited up to 2 s: a 6-step toy_tiny run logging every step
    # took 2.0 s per step at 2 s and 0.1-0.22 s at 0.2 s (53 -> 41 s wall).
    controller_poll_s=0.25,
    num_to_keep=2,
    crash_at_step=0,  # fault-injection for tests: the last worker exits once at this step (0 = off)
)
evaluation = dict(mode="slide", crop_size=(512, 512), stride=(426, 426), num_panels=4, max_images=None)
cache_root = None  # resolved from $C2S_CACHE (default ~/.cache/c2s) at the entrypoint
work_dir = "runs"
