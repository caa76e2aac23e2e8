# Student = mmseg backbone + decode head + 1x1 projection to the CLIP embedding dim (c2s/student/zoo.py).
# MSCAN-B + LightHamHead (mmseg: drop_path_rate 0.1, dropout 0.1, head channels 512; stride 8).
# null means "the variant's published mmseg value" (listed above), so model.name can be swept freely.
model = dict(
    name="segnext_b",  # a name from c2s.student.zoo.VARIANTS
    embed_dim=512,  # must equal the teacher's embedding dim
    pretrained=None,  # local backbone weights (torch.load(weights_only=True)); null = random init
    drop_path_rate=None,  # stochastic depth in the backbone
    dropout_ratio=None,  # dropout before the 1x1 projection (the head's conv_seg)
    head_channels=None,  # decode-head width (LightHamHead: channels = ham_channels)
    norm="BN",  # decode-head norm (and MSCAN's): "BN", or "SyncBN" under multi-GPU DDP
    img_size=None,  # SETR only: ViT position-embedding grid size (pixels); null = 512 (96 for setr_tiny)
    # Subtract the mean feature (batch mean in training, running mean at evaluation) so no shared offset can
    # act as a per-class logit bias (c2s.student.model.FeatureCentering has the measurement). False = the
    # paper's plain F.
    center_features=False,
    center_momentum=0.1,  # running-mean update rate of the centring (as BatchNorm's momentum)
)
